"""Hunting views: typed, documented SQL over the temporal store for ``fleetctl sql``.

Each view reads the rows one pack query collected (by the query's name inside its pack,
so a renamed pack keeps working) and exposes their columns with SQL types plus the
row's lifetime, ``first_seen`` and ``removed_at`` (unix seconds; ``removed_at`` is NULL
while the row still exists). "As of T" is ``first_seen <= T AND (removed_at IS NULL OR
removed_at > T)``. Migrations create them by version: version 1 (migration 0004) the
views over collected rows, findings and hosts; version 2 (0007) ``hunt_results`` and
``hunt_live_results``; version 3 (0008) ``hunt_rejected``; version 4 (0010)
``hunt_findings`` again, with the learning and ack columns, and
``hunt_finding_occurrences``; version 5 (0011) every view again, each unix-seconds
column with an ISO 8601 UTC twin named ``<column>_iso``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

VERSION = 5

# view -> (pack query names, [(column, SQL type)])  (columns are the query's own names)
ROW_VIEWS: dict[str, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    "hunt_processes": (
        ("process_lineage", "process_lineage_darwin"),
        (
            ("pid", "BIGINT"),
            ("parent", "BIGINT"),
            ("start_time", "BIGINT"),
            ("name", "TEXT"),
            ("path", "TEXT"),
            ("cmdline", "TEXT"),
            ("uid", "BIGINT"),
            ("euid", "BIGINT"),
            ("cwd", "TEXT"),
            ("cgroup_path", "TEXT"),
            ("parent_name", "TEXT"),
            ("parent_path", "TEXT"),
            ("parent_cmdline", "TEXT"),
            ("grandparent_pid", "BIGINT"),
            ("grandparent_name", "TEXT"),
            ("grandparent_cmdline", "TEXT"),
        ),
    ),
    "hunt_pipes": (
        ("pipe_partners",),
        (
            ("pid", "BIGINT"),
            ("name", "TEXT"),
            ("path", "TEXT"),
            ("fd", "BIGINT"),
            ("mode", "TEXT"),
            ("inode", "BIGINT"),
            ("type", "TEXT"),
            ("partner_pid", "BIGINT"),
            ("partner_name", "TEXT"),
            ("partner_path", "TEXT"),
            ("partner_fd", "BIGINT"),
            ("partner_mode", "TEXT"),
        ),
    ),
    "hunt_unix_sockets": (
        ("unix_sockets",),
        (
            ("pid", "BIGINT"),
            ("name", "TEXT"),
            ("process_path", "TEXT"),
            ("cmdline", "TEXT"),
            ("uid", "BIGINT"),
            ("path", "TEXT"),
            ("state", "TEXT"),
        ),
    ),
    "hunt_unix_peers": (
        ("unix_socket_peers",),
        (
            ("pid", "BIGINT"),
            ("name", "TEXT"),
            ("process_path", "TEXT"),
            ("path", "TEXT"),
            ("type", "TEXT"),
            ("state", "TEXT"),
            ("peer_pid", "BIGINT"),
            ("peer_name", "TEXT"),
            ("peer_process_path", "TEXT"),
            ("peer_path", "TEXT"),
        ),
    ),
    "hunt_stdio": (
        ("process_stdio",),
        (
            ("pid", "BIGINT"),
            ("name", "TEXT"),
            ("path", "TEXT"),
            ("cmdline", "TEXT"),
            ("parent", "BIGINT"),
            ("uid", "BIGINT"),
            ("euid", "BIGINT"),
            ("fd", "BIGINT"),
            ("kind", "TEXT"),
            ("target", "TEXT"),
            ("inode", "BIGINT"),
            ("mode", "TEXT"),
            ("partner_pid", "BIGINT"),
            ("partner_name", "TEXT"),
            ("partner_path", "TEXT"),
        ),
    ),
}

PLAIN_VIEWS: dict[str, str] = {
    "hunt_hosts": """SELECT h.id AS host_id, h.host_identifier AS host, h.hostname, h.uuid,
        h.platform, h.os_name, h.os_version, h.osquery_version, h.enrolled_at, h.last_seen
        FROM hosts h""",
    "hunt_execution_paths": """SELECT s.host_id, h.host_identifier AS host, s.path_key,
        s.first_seen, s.last_seen FROM path_sightings s JOIN hosts h ON h.id = s.host_id""",
    "hunt_parent_children": """SELECT c.host_id, h.host_identifier AS host, c.parent, c.child,
        c.first_seen FROM parent_children c JOIN hosts h ON h.id = c.host_id""",
    "hunt_findings": """SELECT f.id, f.host_id, h.host_identifier AS host, f.severity,
        f.score, f.status, f.pid, f.parent, f.child, f.path_key, f.new_on_host,
        f.new_on_fleet, f.first_seen, f.last_seen FROM findings f
        JOIN hosts h ON h.id = f.host_id""",
}


def _value(column: str, sql_type: str, dialect: str) -> str:
    raw = (
        f"NULLIF(r.columns ->> '{column}', '')"
        if dialect == "postgresql"
        else f"NULLIF(json_extract(r.columns, '$.{column}'), '')"
    )
    if sql_type == "TEXT":
        return f"{raw} AS {column}"
    return f"CAST({raw} AS {'BIGINT' if dialect == 'postgresql' else 'INTEGER'}) AS {column}"


def row_view_select(name: str, dialect: str) -> str:
    queries, columns = ROW_VIEWS[name]
    listed = ", ".join(f"'{q}'" for q in queries)
    values = ",\n        ".join(_value(c, t, dialect) for c, t in columns)
    return (
        f"SELECT r.host_id, h.host_identifier AS host,\n"
        f"        {values},\n        r.first_seen, r.removed_at\n"
        f"    FROM result_rows r\n"
        f"    JOIN query_states q ON q.host_id = r.host_id AND q.name = r.name\n"
        f"    JOIN hosts h ON h.id = r.host_id\n"
        f"    WHERE q.query IN ({listed})"
    )


def row_view_sql(name: str, dialect: str) -> str:
    return f"CREATE VIEW {name} AS {row_view_select(name, dialect)}"


def json_array_rows(dialect: str, alias: str, column: str) -> str:
    """A join turning ``column`` (a JSON array) into rows ``alias.value`` with their
    position ``alias.key``, on either database."""
    if dialect == "postgresql":
        return (
            f"CROSS JOIN LATERAL jsonb_array_elements({column}) WITH ORDINALITY"
            f" AS {alias}(value, key)"
        )
    return f"JOIN json_each({column}) AS {alias}"


def hunt_results_sql(dialect: str) -> str:
    """One row per result row of every hunt run a host answered. ``columns`` is the row
    as JSON (``columns ->> 'pid'`` on both databases). A host's answer is current from
    when it was stored (``first_seen``) until its next answer to the same hunt
    (``removed_at``), so "as of T" picks each host's latest answer before T."""
    return f"CREATE VIEW hunt_results AS {hunt_results_select(dialect)}"


def hunt_results_select(dialect: str) -> str:
    return f"""WITH answers AS (
        SELECT u.name AS hunt, r.run, t.host_id, t.rows, t.done_at,
            LEAD(t.done_at) OVER (PARTITION BY r.hunt_id, t.host_id ORDER BY r.run) AS next_at
        FROM hunt_runs r
        JOIN hunts u ON u.id = r.hunt_id
        JOIN campaign_targets t ON t.campaign_id = r.campaign_id
        WHERE t.state = 'done'
    )
    SELECT a.hunt, a.run, a.host_id, h.host_identifier AS host, e.value AS columns,
        a.done_at AS first_seen, a.next_at AS removed_at
    FROM answers a
    JOIN hosts h ON h.id = a.host_id
    {json_array_rows(dialect, "e", "a.rows")}"""


def live_results_sql(dialect: str) -> str:
    """One row per result row of every live query a host answered: a point observation
    at ``answered_at`` (a live query has no next run to end it)."""
    return f"CREATE VIEW hunt_live_results AS {live_results_select(dialect)}"


def live_results_select(dialect: str) -> str:
    return f"""SELECT c.id AS query_id, c.sql, t.host_id, h.host_identifier AS host,
        e.value AS columns, t.done_at AS answered_at
    FROM campaigns c
    JOIN campaign_targets t ON t.campaign_id = c.id
    JOIN hosts h ON h.id = t.host_id
    {json_array_rows(dialect, "e", "t.rows")}
    WHERE c.kind = 'live' AND t.state = 'done'"""


REJECTED_SQL = """SELECT x.id, x.host_id, h.host_identifier AS host, x.log_type, x.name,
        x.reason, x.line, x.received_at FROM rejected_lines x JOIN hosts h ON h.id = x.host_id"""

# Version 4: a finding's incidents are its occurrences; the finding row keeps the newest
# occurrence's pid, the most severe open occurrence's severity and the ack.
FINDING_VIEWS: dict[str, str] = {
    "hunt_findings": """SELECT f.id, f.host_id, h.host_identifier AS host, f.severity,
        f.score, f.status, f.pid, f.parent, f.child, f.path_key, f.new_on_host,
        f.new_on_fleet, f.first_seen, f.last_seen, f.seen_during_learning, f.acked_by,
        f.acked_at FROM findings f JOIN hosts h ON h.id = f.host_id""",
    "hunt_finding_occurrences": """SELECT o.id, o.finding_id, f.host_id,
        h.host_identifier AS host, f.path_key, o.pid, o.start_time, o.severity, o.score,
        o.seen_during_learning, o.first_seen, o.last_seen, o.acked_at,
        o.document AS evidence FROM finding_occurrences o
        JOIN findings f ON f.id = o.finding_id JOIN hosts h ON h.id = f.host_id""",
}

# Version 5: each view's unix-seconds columns get an ISO 8601 UTC twin, ``<column>_iso``.
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    **{name: ("first_seen", "removed_at") for name in ROW_VIEWS},
    "hunt_processes": ("start_time", "first_seen", "removed_at"),
    "hunt_hosts": ("enrolled_at", "last_seen"),
    "hunt_execution_paths": ("first_seen", "last_seen"),
    "hunt_parent_children": ("first_seen",),
    "hunt_findings": ("first_seen", "last_seen", "acked_at"),
    "hunt_finding_occurrences": ("start_time", "first_seen", "last_seen", "acked_at"),
    "hunt_results": ("first_seen", "removed_at"),
    "hunt_live_results": ("answered_at",),
    "hunt_rejected": ("received_at",),
}
MAX_ISO_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z: a host's start_time may be anything

# PostgreSQL gets SQLite's unixepoch(), so one "the last week" reads the same on both:
# ``removed_at > unixepoch() - 7*86400``.
UNIXEPOCH_FUNCTION = """CREATE OR REPLACE FUNCTION unixepoch() RETURNS bigint
    LANGUAGE sql STABLE PARALLEL SAFE
    AS 'SELECT floor(extract(epoch FROM now()))::bigint'"""


def iso_sql(column: str, dialect: str) -> str:
    """ISO 8601 UTC text of the unix seconds in ``column``; NULL when out of range."""
    text = (
        f"to_char(to_timestamp({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        if dialect == "postgresql"
        else f"strftime('%Y-%m-%dT%H:%M:%SZ', {column}, 'unixepoch')"
    )
    return f"CASE WHEN {column} BETWEEN 0 AND {MAX_ISO_TIME} THEN {text} END"


def _select_v4(name: str, dialect: str) -> str:
    """The body of view ``name`` as version 4 left it."""
    if name in ROW_VIEWS:
        return row_view_select(name, dialect)
    if name == "hunt_results":
        return hunt_results_select(dialect)
    if name == "hunt_live_results":
        return live_results_select(dialect)
    if name == "hunt_rejected":
        return REJECTED_SQL
    return FINDING_VIEWS.get(name) or PLAIN_VIEWS[name]


def _select_v5(name: str, dialect: str) -> str:
    twins = "".join(f",\n    {iso_sql(f'b.{c}', dialect)} AS {c}_iso" for c in TIME_COLUMNS[name])
    return f"SELECT b.*{twins}\nFROM ({_select_v4(name, dialect)}) AS b"


# The views each version creates, in order (a later version may create one again).
_ADDED: dict[int, tuple[str, ...]] = {
    1: (*ROW_VIEWS, *PLAIN_VIEWS),
    2: ("hunt_results", "hunt_live_results"),
    3: ("hunt_rejected",),
    4: tuple(FINDING_VIEWS),
    5: tuple(TIME_COLUMNS),
}


def hunting_views() -> tuple[str, ...]:
    """Every hunting view of the current version: all an analyst's SQL may read."""
    return tuple(dict.fromkeys(name for version in sorted(_ADDED) for name in _ADDED[version]))


def create_statements(dialect: str, version: int = VERSION) -> list[str]:
    """CREATE VIEW statements that ``version`` adds (a later version keeps the earlier
    specs so the migrations that created them still replay)."""
    if version == 1:
        return [row_view_sql(name, dialect) for name in ROW_VIEWS] + [
            f"CREATE VIEW {name} AS {sql}" for name, sql in PLAIN_VIEWS.items()
        ]
    if version == 2:
        return [hunt_results_sql(dialect), live_results_sql(dialect)]
    if version == 3:
        return [f"CREATE VIEW hunt_rejected AS {REJECTED_SQL}"]
    if version == 4:
        return [f"CREATE VIEW {name} AS {sql}" for name, sql in FINDING_VIEWS.items()]
    if version == 5:
        return [f"CREATE VIEW {name} AS {_select_v5(name, dialect)}" for name in TIME_COLUMNS]
    raise ValueError(f"unknown hunting views version {version}")


def drop_statements(version: int = VERSION) -> list[str]:
    """DROP VIEW statements of the views that ``version`` created."""
    if version not in _ADDED:
        raise ValueError(f"unknown hunting views version {version}")
    return [f"DROP VIEW IF EXISTS {name}" for name in _ADDED[version]]


def restore_statements(version: int, dialect: str = "sqlite") -> list[str]:
    """CREATE VIEW statements that bring back, as the version before had them, the views
    ``version`` created again (for the downgrade of its migration)."""
    if version == 5:
        return [f"CREATE VIEW {name} AS {_select_v4(name, dialect)}" for name in TIME_COLUMNS]
    if version == 4:
        return [f"CREATE VIEW hunt_findings AS {PLAIN_VIEWS['hunt_findings']}"]
    if version in _ADDED:
        return []
    raise ValueError(f"unknown hunting views version {version}")


# What each view holds, for ``fleetctl sql --schema`` (the README's table says the same).
DESCRIPTIONS: dict[str, str] = {
    "hunt_hosts": "enrolled hosts",
    "hunt_processes": "processes with parent and grandparent (process_lineage)",
    "hunt_pipes": "pipe and FIFO ends with the process at the other end (pipe_partners)",
    "hunt_unix_sockets": "unix sockets and the processes holding them (unix_sockets)",
    "hunt_unix_peers": "connected unix sockets with the peer process (unix_socket_peers)",
    "hunt_stdio": "what each process's stdin, stdout and stderr are (process_stdio)",
    "hunt_execution_paths": "execution paths detection has seen on each host",
    "hunt_parent_children": "parent/child name pairs detection has seen on each host",
    "hunt_findings": "findings: one per host and execution path",
    "hunt_finding_occurrences": "each incident of a finding, with its evidence as first stored",
    "hunt_results": "every row of every hunt run a host answered",
    "hunt_live_results": "every row of every live query a host answered",
    "hunt_rejected": "log lines quarantined at ingest, with the reason",
}

# Columns whose values come from a closed set, and that set.
CLOSED_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("hunt_stdio", "kind"): (
        "fifo", "pipe", "unix", "tcp", "udp", "file", "null", "pty", "tty", "closed", "other",
    ),
    ("hunt_stdio", "mode"): ("r", "w", "rw"),
    ("hunt_pipes", "mode"): ("r", "w", "rw"),
    ("hunt_pipes", "type"): ("anonymous", "named"),
    ("hunt_pipes", "partner_mode"): ("r", "w", "rw"),
    ("hunt_findings", "severity"): ("info", "low", "medium", "high", "critical"),
    ("hunt_findings", "status"): ("open", "reopened", "acked", "suppressed"),
    ("hunt_finding_occurrences", "severity"): ("info", "low", "medium", "high", "critical"),
    ("hunt_rejected", "log_type"): ("result", "status"),
}  # fmt: skip


# Computed columns whose type SQLite cannot report.
_COMPUTED_TYPES = {
    ("hunt_results", "columns"): "JSON",
    ("hunt_results", "removed_at"): "BIGINT",
    ("hunt_live_results", "columns"): "JSON",
}


def describe(session: Session) -> list[dict[str, Any]]:
    """Every hunting view with what it holds and its columns (name, type, and the closed
    set of values where there is one), in the order the database reports them."""
    inspector = inspect(session.connection())
    described = []
    for view in hunting_views():
        declared = dict(ROW_VIEWS[view][1]) if view in ROW_VIEWS else {}
        declared.update({c: t for (v, c), t in _COMPUTED_TYPES.items() if v == view})
        columns = [
            {
                "name": column["name"],
                "type": _type_name(column["name"], declared.get(column["name"]), column["type"]),
                "values": list(CLOSED_VALUES.get((view, column["name"]), ())),
            }
            for column in inspector.get_columns(view)
        ]
        described.append({"view": view, "description": DESCRIPTIONS[view], "columns": columns})
    return described


def _type_name(name: str, declared: str | None, reported: Any) -> str:
    """One word for a column's type on either database: integer, text, boolean, json."""
    if name.endswith("_iso"):
        return "text"
    if declared is not None:
        return {"BIGINT": "integer", "JSON": "json"}.get(declared, "text")
    word = str(reported).lower() if reported is not None else ""
    for kind in ("int", "bool", "json"):
        if kind in word:
            return {"int": "integer", "bool": "boolean", "json": "json"}[kind]
    return "text" if word and word != "null" else "any"
