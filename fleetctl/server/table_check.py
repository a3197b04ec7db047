"""Which targeted hosts cannot run a query, because they lack a table it reads.

Live queries, hunts and dynamic labels are checked before anything is sent: a table of
osquery's that a host's platform lacks, or an extension table its osqueryd does not report
(``telemetry-health/extension_tables``), would only come back as an error from each such
host. The admin hears about them at once, by name, and chooses
(``admin_queries.check_targets_have_tables``); hunt runs skip them.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from fleetctl.schema import default_schema
from storage import hosts as host_store
from storage import results as result_store


def hosts_lacking_tables(
    session: Session, sql: str, host_ids: list[int]
) -> dict[int, tuple[str, str]]:
    """host id -> (identifier, why) for each target that cannot run ``sql``: a table of
    osquery's that its platform lacks, or an extension table that the host's osqueryd
    does not report (a host that never reported its extensions is given the benefit of
    the doubt)."""
    schema = default_schema()
    tables = sorted(schema.compile(sql).tables)
    extension = [t for t in tables if schema.tables[t].extension]
    loaded = result_store.current_column_values(
        session, host_ids, "telemetry-health", "extension_tables", "table_name"
    )
    lacking = {}
    for host_id, (ident, family) in host_store.families(session, host_ids).items():
        absent = [t for t in tables if family not in schema.tables[t].platforms]
        reported = loaded.get(host_id)
        if reported is not None:
            absent += [t for t in extension if t not in reported and t not in absent]
        if absent:
            lacking[host_id] = (ident, f"no table {', '.join(absent)} on this {family} host")
    return lacking
