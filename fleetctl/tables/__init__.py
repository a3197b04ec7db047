"""osquery-compatible Linux tables, implemented over /proc, /etc and netlink.

``TABLES`` maps each table name to a ``TableSpec``: the columns exactly as osquery
declares them on Linux (read from the shipped schema JSON), the columns whose
``=``/``IN`` constraints the generator honours, and the generator itself::

    from fleetctl.tables import TABLES
    rows = TABLES["process_open_pipes"].rows({"pid": {1234}})

Generators take the pushed-down constraints and a ``Scan`` (the per-query cache of
/proc reads) and return plain dicts with typed Python values; a column missing from a
row, or set to None, is SQL NULL. The embedded engine (``fleetctl.engine``) and the
osquery extension (``fleetctl.extension``) both serve these specs. The Linux evented
tables are declared but empty: this engine has no event publisher
(``fleetctl.tables.events``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from fleetctl.schema import Column, default_schema
from fleetctl.tables import (
    accounts,
    events,
    files,
    interfaces,
    osquery_state,
    pipes,
    processes,
    sockets,
    stdio,
    system,
    unix_peers,
)
from fleetctl.tables.runtime import AgentRuntime
from fleetctl.tables.scan import Constraints, Scan

Row = dict[str, Any]
Generate = Callable[[Constraints, Scan], list[Row]]

__all__ = [
    "STOCK_TABLES",
    "TABLES",
    "AgentRuntime",
    "Column",
    "Constraints",
    "Row",
    "Scan",
    "TableSpec",
]


@dataclass(frozen=True)
class TableSpec:
    """One table: schema, pushdown columns and generator."""

    name: str
    columns: tuple[Column, ...]
    generate: Generate
    pushdown: frozenset[str] = frozenset()
    description: str = ""
    extension: bool = False

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def visible_columns(self) -> list[Column]:
        """Columns ``SELECT *`` returns (osquery hides the others)."""
        return [c for c in self.columns if not c.hidden]

    def rows(self, constraints: Constraints | None = None, scan: Scan | None = None) -> list[Row]:
        """Generate the rows for ``constraints`` with a fresh scan unless one is given."""
        return self.generate(constraints or {}, scan if scan is not None else Scan())


#: The platform these tables serve: their columns are what a Linux osqueryd declares.
PLATFORM = "linux"


def _table(name: str, generate: Generate, *pushdown: str) -> TableSpec:
    table = default_schema().entry(name)
    columns = table.declared(PLATFORM)
    known = {c.name for c in columns}
    unknown = set(pushdown) - known
    if unknown:
        raise ValueError(f"{name}: pushdown on unknown columns {sorted(unknown)}")
    return TableSpec(
        name=name,
        columns=columns,
        generate=generate,
        pushdown=frozenset(pushdown),
        description=table.description,
        extension=table.extension,
    )


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        _table("processes", processes.generate, "pid"),
        _table("process_open_files", files.generate, "pid"),
        _table("process_open_pipes", pipes.generate, "pid"),
        _table("process_open_sockets", sockets.generate_open_sockets, "pid"),
        _table("listening_ports", sockets.generate_listening_ports, "pid"),
        _table("unix_socket_peers", unix_peers.generate, "pid"),
        _table("process_stdio", stdio.generate, "pid"),
        _table("users", accounts.generate_users, "uid", "username"),
        _table("groups", accounts.generate_groups, "gid"),
        _table("logged_in_users", accounts.generate_logged_in_users),
        _table("system_info", system.generate_system_info),
        _table("os_version", system.generate_os_version),
        _table("kernel_info", system.generate_kernel_info),
        _table("uptime", system.generate_uptime),
        _table("time", system.generate_time),
        _table("interface_addresses", interfaces.generate),
        _table("osquery_info", osquery_state.generate_info),
        _table("osquery_flags", osquery_state.generate_flags),
        _table("osquery_schedule", osquery_state.generate_schedule),
        _table("osquery_registry", osquery_state.generate_registry),
        _table("osquery_events", osquery_state.generate_events),
        _table("osquery_extensions", osquery_state.generate_extensions),
        _table("osquery_packs", osquery_state.generate_packs),
        *(_table(name, events.generate_nothing) for name in events.SUBSCRIBERS),
    )
}

EXTENSION_TABLES = tuple(name for name, spec in TABLES.items() if spec.extension)

#: What a stock osqueryd serves: osquery's own tables only, each generated as osquery's
#: implementation does where this project's deliberately differs (``process_open_pipes``;
#: see ``fleetctl.tables.pipes``). The other tables already return osquery's rows,
#: quirks included: ``process_open_sockets`` keeps one row per socket, at the highest fd
#: of the last process holding it, as ``procGetSocketInodeToProcessInfoMap`` does.
STOCK_TABLES: dict[str, TableSpec] = {
    name: replace(spec, generate=pipes.generate_stock) if name == "process_open_pipes" else spec
    for name, spec in TABLES.items()
    if not spec.extension
}
