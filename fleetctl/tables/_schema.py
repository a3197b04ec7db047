"""Column definitions for every table, read from the shipped osquery schema JSON.

The names, types and flags come from ``fleetctl/schema/osquery_tables.json`` (osquery's
own specs), ``osquery_tables_supplement.json`` (the utility tables that file lacks, such
as osquery_flags, time and uptime, transcribed from osquery's ``specs/``) and
``extension_tables.json`` (this project's tables) so they cannot drift from what a real
osqueryd exposes.

Linux view of a spec: a column restricted to other platforms (``extended_schema``)
still exists on Linux but is hidden, exactly as osquery's ``gentable.py`` builds it, and
each column alias becomes one more hidden column carrying the same value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

PLATFORM = "linux"

#: osquery column type -> SQLite declared type used in CREATE TABLE.
SQLITE_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "bigint": "INTEGER",
    "unsigned_bigint": "INTEGER",
    "double": "REAL",
    "blob": "BLOB",
}

#: osquery column type -> the type name an extension announces in its column routes.
EXTENSION_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "bigint": "BIGINT",
    "unsigned_bigint": "UNSIGNED BIGINT",
    "double": "DOUBLE",
    "blob": "BLOB",
}


@dataclass(frozen=True)
class Column:
    """One column as osquery declares it on Linux."""

    name: str
    type: str
    description: str = ""
    hidden: bool = False
    index: bool = False
    required: bool = False
    additional: bool = False
    collate: str | None = None
    alias_of: str | None = None

    @property
    def sqlite_type(self) -> str:
        return SQLITE_TYPES[self.type]


def _load(filename: str) -> dict[str, dict[str, Any]]:
    text = resources.files("fleetctl.schema").joinpath(filename).read_text(encoding="utf-8")
    return {spec["name"]: spec for spec in json.loads(text) if not spec["name"].startswith("_")}


OSQUERY_SPECS: dict[str, dict[str, Any]] = _load("osquery_tables.json")
SUPPLEMENT_SPECS: dict[str, dict[str, Any]] = _load("osquery_tables_supplement.json")
EXTENSION_SPECS: dict[str, dict[str, Any]] = _load("extension_tables.json")


def spec_for(name: str) -> dict[str, Any]:
    """The raw spec of ``name`` from whichever source defines it."""
    for source in (OSQUERY_SPECS, SUPPLEMENT_SPECS, EXTENSION_SPECS):
        if name in source:
            return source[name]
    raise KeyError(name)


def linux_columns(name: str) -> tuple[Column, ...]:
    """Columns of table ``name`` as a Linux osqueryd declares them, aliases last."""
    spec = spec_for(name)
    columns: list[Column] = []
    aliases: list[Column] = []
    for raw in spec["columns"]:
        platforms = raw.get("platforms")
        foreign = bool(platforms) and PLATFORM not in platforms
        col = Column(
            name=raw["name"],
            type=raw["type"],
            description=raw.get("description", ""),
            hidden=bool(raw.get("hidden")) or foreign,
            index=bool(raw.get("index")),
            required=bool(raw.get("required")),
            additional=bool(raw.get("additional")),
            collate=raw.get("collate"),
        )
        columns.append(col)
        for alias in raw.get("aliases") or ():
            aliases.append(
                Column(
                    name=alias,
                    type=col.type,
                    description=f"Alias of {col.name}",
                    hidden=True,
                    collate=col.collate,
                    alias_of=col.name,
                )
            )
    return tuple(columns + aliases)


def description_of(name: str) -> str:
    return str(spec_for(name).get("description", ""))
