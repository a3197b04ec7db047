"""osquery's table schemas: one model for the embedded engine, the extension and packs.

The schema comes from ``osquery_tables.json`` (a subset of osquery's specs),
``osquery_tables_supplement.json`` (more of osquery's specs, for tables the subset lacks,
such as osquery_flags, time and uptime) and ``extension_tables.json`` (this project's
extension tables), all in this package. Entries whose name starts with ``_`` are
metadata; entries with ``present_in_specs: false`` are kept apart (``Schema.unlisted``):
the engine may serve them, packs may not name them. A table name may appear in only one
file: a second definition is an error, not an override.

``fleetctl.schema.model`` holds the ``Table`` and ``Column`` objects and the CREATE TABLE
they declare; ``fleetctl.schema.compile`` prepares SQL against them as osqueryd plans it
(``Schema.compile``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import apsw

from fleetctl.schema.compile import Compiled, Scan, compile_sql, open_database, output_columns
from fleetctl.schema.model import (
    EXTENSION_TYPES,
    PLATFORMS,
    SQLITE_TYPES,
    Column,
    Table,
    create_table_sql,
    with_aliases,
)

SCHEMA_DIR = Path(__file__).resolve().parent
OSQUERY_SCHEMA_FILES = (
    SCHEMA_DIR / "osquery_tables.json",
    SCHEMA_DIR / "osquery_tables_supplement.json",
)
EXTENSION_SCHEMA_FILES = (SCHEMA_DIR / "extension_tables.json",)
SCHEMA_FILES = OSQUERY_SCHEMA_FILES + EXTENSION_SCHEMA_FILES


def _table_from_entry(entry: Mapping[str, Any]) -> Table:
    columns = tuple(
        Column(
            name=c["name"],
            type=c.get("type", "text"),
            description=c.get("description", ""),
            hidden=bool(c.get("hidden")),
            index=bool(c.get("index")),
            required=bool(c.get("required")),
            additional=bool(c.get("additional")),
            collate=c.get("collate"),
            platforms=frozenset(c["platforms"]) if c.get("platforms") else None,
            aliases=tuple(c.get("aliases") or ()),
        )
        for c in entry.get("columns", [])
    )
    return Table(
        name=entry["name"],
        platforms=frozenset(entry.get("platforms") or ()),
        columns=columns,
        aliases=tuple(entry.get("table_aliases") or ()),
        extension=bool(entry.get("extension")),
        description=str(entry.get("description", "")),
        spec_path=str(entry.get("spec_path") or ""),
        in_specs=entry.get("present_in_specs") is not False,
    )


class Schema:
    """Tables by name, with one compiling SQLite database per platform (built lazily)."""

    def __init__(self, tables: Iterable[Table]) -> None:
        listed = list(tables)
        self.tables: dict[str, Table] = {t.name: t for t in listed if t.in_specs}
        self.unlisted: dict[str, Table] = {t.name: t for t in listed if not t.in_specs}
        self._aliases = {a: t.name for t in self.tables.values() for a in t.aliases}
        self._connections: dict[str | None, apsw.Connection] = {}

    def table(self, name: str) -> Table | None:
        """A table by name or by one of its aliases (``hosts`` is ``etc_hosts``)."""
        return self.tables.get(self._aliases.get(name, name))

    def entry(self, name: str) -> Table:
        """Any entry by its own name, unlisted ones included (``KeyError`` if none)."""
        found = self.tables.get(name) or self.unlisted.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def tables_on(self, platform: str | None) -> dict[str, Table]:
        """Tables that exist on ``platform`` (every table when ``platform`` is None)."""
        return {n: t for n, t in self.tables.items() if platform is None or platform in t.platforms}

    def compile(self, sql: str, platform: str | None = None) -> Compiled:
        """Prepare ``sql`` on ``platform``'s tables (all tables and columns when None)."""
        return compile_sql(self._connection(platform), sql, self.tables)

    def columns(self, sql: str, platform: str | None = None) -> tuple[str, ...] | None:
        """The columns ``sql`` returns, in its order, on ``platform``'s tables."""
        return output_columns(self._connection(platform), sql)

    def _connection(self, platform: str | None) -> Any:
        if platform not in self._connections:
            self._connections[platform] = open_database(self.tables_on(platform), platform)
        return self._connections[platform]


class SchemaConflictError(ValueError):
    """Two schema entries (in one file or in two) define the same table name."""

    def __init__(self, name: str, first: Path, second: Path) -> None:
        where = first.name if first == second else f"{first.name} and {second.name}"
        super().__init__(f"table {name} is defined twice ({where})")
        self.name = name
        self.first = first
        self.second = second


def load_schema(paths: Iterable[Path] = SCHEMA_FILES) -> Schema:
    """Read schema files (osquery's format: a JSON list of table entries) into one schema.

    Every name outside metadata counts, including entries that are not tables
    (``present_in_specs: false``), so a file cannot quietly redefine what another one
    says about a name; ``SchemaConflictError`` names both files.
    """
    tables: list[Table] = []
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            name = entry["name"]
            if name.startswith("_"):
                continue
            if name in seen:
                raise SchemaConflictError(name, seen[name], path)
            seen[name] = path
            tables.append(_table_from_entry(entry))
    return Schema(tables)


@functools.cache
def default_schema() -> Schema:
    """The schema shipped with fleetctl, read once on first use (not at import)."""
    return load_schema()


__all__ = [
    "EXTENSION_TYPES",
    "PLATFORMS",
    "SQLITE_TYPES",
    "Column",
    "Compiled",
    "Scan",
    "Schema",
    "SchemaConflictError",
    "Table",
    "create_table_sql",
    "default_schema",
    "load_schema",
    "with_aliases",
]
