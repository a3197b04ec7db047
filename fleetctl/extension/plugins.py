"""osquery-python table plugins for this project's own tables.

Stock osqueryd has no table that gives a unix socket's peer or a process's stdio
channel; these plugins add ``unix_socket_peers`` and ``process_stdio`` to a real
osqueryd. Values go over Thrift as strings; a NULL is sent as an absent key, which
osqueryd turns back into SQL NULL. Equality constraints osqueryd passes in the request
context (``pid = 123``, ``pid IN (...)``) are pushed down like in the embedded engine.
"""

from __future__ import annotations

from typing import Any

import osquery

from fleetctl.engine.strings import osquery_string
from fleetctl.schema import EXTENSION_TYPES
from fleetctl.tables import TABLES, Scan, TableSpec

# osquery ColumnOptions bits announced in column routes.
_INDEX, _REQUIRED, _ADDITIONAL, _HIDDEN = 1, 2, 4, 16
_EQUALS = 2  # osquery's ConstraintOperator EQUALS


def constraints_from_context(spec: TableSpec, context: dict[str, Any]) -> dict[str, set[Any]]:
    """``{column: {values}}`` for the EQUALS constraints osqueryd sent on pushdown
    columns (the ``context`` JSON of a generate request)."""
    constraints: dict[str, set[Any]] = {}
    for entry in context.get("constraints") or ():
        name = entry.get("name")
        if name not in spec.pushdown:
            continue
        values = {
            item.get("expr")
            for item in entry.get("list") or ()
            if int(item.get("op", 0)) == _EQUALS
        }
        if values:
            constraints[name] = constraints[name] & values if name in constraints else values
    return constraints


def string_rows(spec: TableSpec, rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    names = spec.column_names
    return [
        {name: osquery_string(row[name]) for name in names if row.get(name) is not None}
        for row in rows
    ]


class SpecTablePlugin(osquery.TablePlugin):  # type: ignore[misc]  # untyped library
    """A TablePlugin serving one ``TableSpec``; subclasses set ``table``."""

    table: str = ""

    @property
    def spec(self) -> TableSpec:
        return TABLES[self.table]

    def name(self) -> str:
        return self.table

    def columns(self) -> list[osquery.TableColumn]:
        return [
            osquery.TableColumn(name=c.name, type=EXTENSION_TYPES[c.type])
            for c in self.spec.columns
        ]

    def routes(self) -> list[dict[str, str]]:
        """Column routes with osquery's option bits (index, hidden, ...), which the
        stock TablePlugin always sends as 0."""
        routes = []
        for column in self.spec.columns:
            options = (
                (_INDEX if column.index else 0)
                | (_REQUIRED if column.required else 0)
                | (_ADDITIONAL if column.additional else 0)
                | (_HIDDEN if column.hidden else 0)
            )
            routes.append(
                {
                    "id": "column",
                    "name": column.name,
                    "type": EXTENSION_TYPES[column.type],
                    "op": str(options),
                }
            )
        return routes

    def generate(self, context: dict[str, Any]) -> list[dict[str, str]]:
        spec = self.spec
        rows = spec.generate(constraints_from_context(spec, context or {}), Scan())
        return string_rows(spec, rows)


class UnixSocketPeersTable(SpecTablePlugin):
    table = "unix_socket_peers"


class ProcessStdioTable(SpecTablePlugin):
    table = "process_stdio"


PLUGINS = (UnixSocketPeersTable, ProcessStdioTable)


def register_plugins() -> None:
    """Add the plugins to osquery-python's ExtensionManager (idempotent).

    ``osquery.register_plugin`` is called directly rather than used as a class
    decorator: it returns None, so decorating would replace the class with None.
    """
    for plugin in PLUGINS:
        osquery.register_plugin(plugin)
