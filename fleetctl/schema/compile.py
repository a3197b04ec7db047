"""SQL compiled against the schema the way osqueryd plans it; nothing is ever executed.

A query is prepared in SQLite against virtual tables declared like osqueryd declares
them (hidden columns are ``HIDDEN``, so ``SELECT *`` skips them and naming them works),
and the virtual tables answer ``xBestIndex`` with osquery's cost rules
(``osquery/sql/virtual_table.cpp``). The plan SQLite picks then shows, for each table
scan, whether a required column is constrained: osqueryd fails such a scan with
``SQLITE_CONSTRAINT`` otherwise. Each platform gets its own database holding only the
tables and columns that exist there, so "no such table/column" errors are per platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import apsw

from fleetctl.schema.model import Column, Table, create_table_sql, with_aliases

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


class _VirtualTable:
    """Answers SQLite's planner like osquery's ``xBestIndex``; never yields rows.

    Method names are apsw's virtual-table protocol. ``columns`` are the declared
    columns' originals: an alias column plans as the column it stands for.
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
        declared = with_aliases(columns)
        originals = {c.name: c for c in columns}
        targets = tuple(originals[c.alias_of] if c.alias_of else c for c in declared)
        return create_table_sql(name, declared), _VirtualTable(table, targets)

    Connect = Create


def open_database(tables: Mapping[str, Table], platform: str | None) -> apsw.Connection:
    """An in-memory database declaring ``tables`` as ``platform``'s osqueryd does."""
    conn = apsw.Connection(":memory:")
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
    return conn


def output_columns(conn: apsw.Connection, sql: str) -> tuple[str, ...] | None:
    """The names of the columns ``sql`` returns, in its order, from the prepared
    statement (it is stopped before its first step); None when it does not prepare."""
    named: list[tuple[str, ...]] = []

    def stop_before_running(cursor: apsw.Cursor, statement: str, bindings: Any) -> bool:
        named.append(tuple(d[0] for d in cursor.getdescription()))
        return False

    cursor = conn.cursor()
    cursor.exec_trace = stop_before_running
    try:
        cursor.execute(sql, can_cache=False)
    except (apsw.ExecTraceAbort, apsw.ExecutionCompleteError):
        pass
    except apsw.Error:
        return None
    return named[-1] if named else None


def compile_sql(conn: apsw.Connection, sql: str, known: Mapping[str, Table]) -> Compiled:
    """Prepare ``sql`` on a database from ``open_database`` and read the plan."""
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
    tables = frozenset({s.table for s in scans} | (read & set(known)))
    return Compiled(statements=len(statements), tables=tables, scans=scans)
