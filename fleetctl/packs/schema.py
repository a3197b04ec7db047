"""osquery's table schemas, and SQL compiled against them the way osqueryd plans it.

The schema comes from ``fleetctl/schema/osquery_tables.json`` (a subset of osquery's
specs), ``osquery_tables_supplement.json`` (more of osquery's specs, for tables the subset
lacks) and ``extension_tables.json`` (this project's extension tables). Entries whose name
starts with ``_`` are metadata and entries with ``present_in_specs: false`` are not tables.
A table name may appear in only one file: a second definition is an error, not an override.

``Schema.compile`` prepares a query in SQLite against virtual tables declared like
osqueryd declares them (hidden columns are ``HIDDEN``, so ``SELECT *`` skips them and
naming them works), and the virtual tables answer ``xBestIndex`` with osquery's cost
rules (``osquery/sql/virtual_table.cpp``). The plan SQLite picks then shows, for each
table scan, whether a required column is constrained: osqueryd fails such a scan with
``SQLITE_CONSTRAINT`` otherwise. Each platform gets its own database holding only the
tables and columns that exist there, so "no such table/column" errors are per platform.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import apsw

from fleetctl.packs.model import PLATFORMS

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
OSQUERY_SCHEMA_FILES = (
    SCHEMA_DIR / "osquery_tables.json",
    SCHEMA_DIR / "osquery_tables_supplement.json",
)
EXTENSION_SCHEMA_FILES = (SCHEMA_DIR / "extension_tables.json",)
SCHEMA_FILES = OSQUERY_SCHEMA_FILES + EXTENSION_SCHEMA_FILES

# Functions osqueryd adds to SQLite (osquery/sql/sqlite_*.cpp); stubs let queries that call
# them compile. Nothing is ever executed here.
OSQUERY_FUNCTIONS = (
    "acos", "asin", "atan", "carve", "ceil", "community_id_v1", "concat", "concat_ws",
    "conditional_to_base64", "cos", "cot", "degrees", "exp", "floor", "from_base64",
    "in_cidr_block", "inet_aton", "ln", "log", "log10", "md5", "pi", "power", "radians",
    "regex_match", "regex_split", "sha1", "sha256", "sin", "split", "sqrt", "tan",
    "to_base64", "version_compare",
)  # fmt: skip

_MAX_COST = 1_000_000.0  # osquery kMaxIndexCost: "unusable constraints"
_RANGE_OPS = frozenset(
    {
        apsw.SQLITE_INDEX_CONSTRAINT_GT,
        apsw.SQLITE_INDEX_CONSTRAINT_GE,
        apsw.SQLITE_INDEX_CONSTRAINT_LT,
        apsw.SQLITE_INDEX_CONSTRAINT_LE,
    }
)


@dataclass(frozen=True)
class Column:
    """A table column; ``platforms`` set means it exists only on those platforms."""

    name: str
    type: str = "text"
    hidden: bool = False
    required: bool = False
    index: bool = False
    additional: bool = False
    platforms: frozenset[str] | None = None
    aliases: tuple[str, ...] = ()

    def exists_on(self, platform: str | None) -> bool:
        return platform is None or self.platforms is None or platform in self.platforms


@dataclass(frozen=True)
class Table:
    """An osquery table (or extension table) and the platforms it exists on."""

    name: str
    platforms: frozenset[str]
    columns: tuple[Column, ...]
    aliases: tuple[str, ...] = ()
    extension: bool = False

    def columns_on(self, platform: str | None) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.exists_on(platform))

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name or name in c.aliases), None)


@dataclass(frozen=True)
class Scan:
    """One table scan in SQLite's chosen plan, and whether osqueryd would allow it."""

    table: str
    required_satisfied: bool


@dataclass(frozen=True)
class Compiled:
    """The outcome of preparing a query: an SQLite error, or the tables it scans."""

    error: str | None = None
    statements: int = 0
    tables: frozenset[str] = frozenset()
    scans: tuple[Scan, ...] = field(default_factory=tuple)


def _table_from_entry(entry: Mapping[str, Any]) -> Table:
    columns = tuple(
        Column(
            name=c["name"],
            type=c.get("type", "text"),
            hidden=bool(c.get("hidden")),
            required=bool(c.get("required")),
            index=bool(c.get("index")),
            additional=bool(c.get("additional")),
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
    )


def _column_sql(column: Column, hidden: bool) -> str:
    sql_type = column.type.replace("_", " ").upper()
    return f'"{column.name}" {sql_type}' + (" HIDDEN" if hidden else "")


class _VirtualTable:
    """Answers SQLite's planner like osquery's ``xBestIndex``; never yields rows.

    Method names are apsw's virtual-table protocol.
    """

    def __init__(self, table: Table, columns: tuple[Column, ...]) -> None:
        self.table = table
        self.columns = columns
        self.has_required = any(c.required for c in columns)

    def BestIndexObject(self, info: apsw.IndexInfo) -> bool:
        cost = _MAX_COST
        required_constraint = False
        argv = 0
        for i in range(info.nConstraint):
            column_index = info.get_aConstraint_iColumn(i)
            if not info.get_aConstraint_usable(i) or not 0 <= column_index < len(self.columns):
                continue
            column = self.columns[column_index]
            if column.type == "text" and info.get_aConstraint_op(i) in _RANGE_OPS:
                cost += 10
                continue
            if column.required:
                required_constraint = True
            elif not (column.index or column.additional):
                continue  # SQLite filters it; osquery never sees it
            cost = 1
            argv += 1
            info.set_aConstraintUsage_argvIndex(i, argv)
        used_required = any(
            i < len(self.columns) and self.columns[i].required for i in info.colUsed
        )
        if used_required and not required_constraint:
            cost = _MAX_COST
        satisfied = required_constraint or not self.has_required
        info.idxStr = f"{self.table.name}\t{int(satisfied)}"
        info.estimatedCost = cost
        return True

    def Open(self) -> _Cursor:
        return _Cursor()

    def Disconnect(self) -> None:
        return None

    Destroy = Disconnect


class _Cursor:
    def Filter(self, *args: Any) -> None:
        return None

    def Eof(self) -> bool:
        return True

    def Close(self) -> None:
        return None


class _Module:
    def __init__(self, tables: Mapping[str, Table], platform: str | None) -> None:
        self.tables = tables
        self.platform = platform

    def Create(self, connection: Any, module: str, db: str, name: str, *args: str) -> Any:
        table = self.tables[name]
        columns = table.columns_on(self.platform)
        ddl = [_column_sql(c, c.hidden) for c in columns]
        # osquery declares column aliases as extra hidden columns (xCreate, "columnAlias").
        ddl += [_column_sql(Column(a, c.type), True) for c in columns for a in c.aliases]
        targets = columns + tuple(c for c in columns for _ in c.aliases)
        return f"CREATE TABLE x({', '.join(ddl)})", _VirtualTable(table, targets)

    Connect = Create


class Schema:
    """Tables by name, with one compiling SQLite database per platform (built lazily)."""

    def __init__(self, tables: Iterable[Table]) -> None:
        self.tables: dict[str, Table] = {t.name: t for t in tables}
        self._aliases = {a: t.name for t in self.tables.values() for a in t.aliases}
        self._connections: dict[str | None, apsw.Connection] = {}

    def table(self, name: str) -> Table | None:
        """A table by name or by one of its aliases (``hosts`` is ``etc_hosts``)."""
        return self.tables.get(self._aliases.get(name, name))

    def tables_on(self, platform: str | None) -> dict[str, Table]:
        """Tables that exist on ``platform`` (every table when ``platform`` is None)."""
        return {n: t for n, t in self.tables.items() if platform is None or platform in t.platforms}

    def _connection(self, platform: str | None) -> apsw.Connection:
        if platform not in self._connections:
            conn = apsw.Connection(":memory:")
            tables = self.tables_on(platform)
            # apsw's VTModule protocol lists optional methods too; this module needs none.
            module = cast("apsw.VTModule", _Module(tables, platform))
            conn.create_module("osquery", module, use_bestindex_object=True)
            for name in OSQUERY_FUNCTIONS:
                conn.create_scalar_function(name, lambda *args: None, -1)
            conn.create_collation("version", lambda a, b: (a > b) - (a < b))
            for table in tables.values():
                conn.execute(f'CREATE VIRTUAL TABLE "{table.name}" USING osquery')
                for alias in table.aliases:
                    conn.execute(f'CREATE VIEW "{alias}" AS SELECT * FROM "{table.name}"')
            self._connections[platform] = conn
        return self._connections[platform]

    def compile(self, sql: str, platform: str | None = None) -> Compiled:
        """Prepare ``sql`` on ``platform``'s tables (all tables and columns when None)."""
        conn = self._connection(platform)
        statements: list[str] = []
        read: set[str] = set()

        def trace(cursor: apsw.Cursor, statement: str, bindings: Any) -> bool:
            statements.append(statement)
            return True

        def authorize(op: int, table: str | None, *rest: Any) -> int:
            if op == apsw.SQLITE_READ and table:
                read.add(table)
            return apsw.SQLITE_OK

        cursor = conn.cursor()
        cursor.exec_trace = trace
        conn.authorizer = authorize
        try:
            rows = list(cursor.execute(sql, explain=1, can_cache=False))
        except apsw.BindingsError:
            return Compiled(error="query has parameters (?), which osqueryd never binds")
        except apsw.Error as exc:
            return Compiled(error=str(exc), statements=len(statements))
        finally:
            conn.authorizer = None
        scans = tuple(
            Scan(table=name, required_satisfied=flag == "1")
            for name, flag in (row[5].split("\t") for row in rows if row[1] == "VFilter")
        )
        tables = frozenset({s.table for s in scans} | (read & set(self.tables)))
        return Compiled(statements=len(statements), tables=tables, scans=scans)


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
            if entry.get("present_in_specs") is False:
                continue
            tables.append(_table_from_entry(entry))
    return Schema(tables)


@functools.cache
def default_schema() -> Schema:
    """The schema shipped with fleetctl, read once on first use (not at import)."""
    return load_schema()


__all__ = [
    "PLATFORMS",
    "Column",
    "Compiled",
    "Scan",
    "Schema",
    "SchemaConflictError",
    "Table",
    "default_schema",
    "load_schema",
]
