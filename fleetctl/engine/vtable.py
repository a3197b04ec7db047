"""APSW virtual-table glue: one eponymous module per ``TableSpec``.

Tables are eponymous-only, as in osquery: ``SELECT * FROM processes`` works without a
CREATE VIRTUAL TABLE, and nothing is generated until a cursor's ``Filter`` runs, so a
query pays only for the tables it names. ``BestIndexObject`` hands ``=`` and ``IN``
constraints on a table's pushdown columns (``pid`` mostly) to the generator, and asks
SQLite for whole IN lists at once so ``pid IN (1, 2, 3)`` is a single generate call.
Constraints are never marked omitted: SQLite re-checks them, so a generator that
returns a superset is still correct.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apsw

from fleetctl.schema import Column, create_table_sql
from fleetctl.tables import Row, TableSpec

RowSource = Callable[[TableSpec, dict[str, set[Any]]], list[Row]]
"""Returns the rows of a table for the given constraints (cached per query)."""

_UNCONSTRAINED_COST = 1_000_000.0
_CONSTRAINED_COST = 10.0


def _to_int(value: Any) -> int | None:
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        return int(str(value).strip(), 10)
    except ValueError:
        # osquery casts with tryTo<long>(); a value that is not a number becomes NULL.
        return None


def _to_float(value: Any) -> float | None:
    if value is None or isinstance(value, float):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


_COERCE: dict[str, Callable[[Any], Any]] = {
    "text": _to_text,
    "integer": _to_int,
    "bigint": _to_int,
    "unsigned_bigint": _to_int,
    "double": _to_float,
    "blob": lambda value: value,
}


class TableModule:
    """``apsw`` module (datasource) serving one table spec."""

    def __init__(self, spec: TableSpec, source: RowSource) -> None:
        self.spec = spec
        self.source = source
        self.schema = create_table_sql(spec.name, spec.columns)

    def Connect(
        self,
        connection: apsw.Connection,
        modulename: str,
        databasename: str,
        tablename: str,
        *args: Any,
    ) -> tuple[str, VirtualTable]:
        return self.schema, VirtualTable(self.spec, self.source)

    Create = Connect


class VirtualTable:
    def __init__(self, spec: TableSpec, source: RowSource) -> None:
        self.spec = spec
        self.source = source
        self.columns: tuple[Column, ...] = spec.columns

    def BestIndexObject(self, info: apsw.IndexInfo) -> bool:
        names: list[str] = []
        for i in range(info.nConstraint):
            if not info.get_aConstraint_usable(i):
                continue
            if info.get_aConstraint_op(i) != apsw.SQLITE_INDEX_CONSTRAINT_EQ:
                continue
            column_index = info.get_aConstraint_iColumn(i)
            if column_index < 0:
                continue
            column = self.columns[column_index]
            if column.alias_of is not None or column.name not in self.spec.pushdown:
                continue
            names.append(column.name)
            info.set_aConstraintUsage_argvIndex(i, len(names))
            if info.get_aConstraintUsage_in(i):
                info.set_aConstraintUsage_in(i, True)
        info.idxStr = ",".join(names)
        if names:
            info.estimatedCost = _CONSTRAINED_COST
            info.estimatedRows = 10
        else:
            info.estimatedCost = _UNCONSTRAINED_COST
            info.estimatedRows = 100_000
        return True

    def Open(self) -> Cursor:
        return Cursor(self)

    def Disconnect(self) -> None:
        pass

    Destroy = Disconnect


class Cursor:
    def __init__(self, table: VirtualTable) -> None:
        self.table = table
        self.rows: list[Row] = []
        self.position = 0
        self._keys = [c.alias_of or c.name for c in table.columns]
        self._coerce = [_COERCE[c.type] for c in table.columns]

    def Filter(
        self, indexnum: int, indexname: str | None, constraintargs: tuple[Any, ...] | None
    ) -> None:
        constraints: dict[str, set[Any]] = {}
        names = indexname.split(",") if indexname else []
        for name, value in zip(names, constraintargs or (), strict=False):
            values = set(value) if isinstance(value, set | frozenset) else {value}
            if name in constraints:
                constraints[name] &= values
            else:
                constraints[name] = values
        self.rows = self.table.source(self.table.spec, constraints)
        self.position = 0

    def Eof(self) -> bool:
        return self.position >= len(self.rows)

    def Rowid(self) -> int:
        return self.position

    def Column(self, number: int) -> Any:
        if number < 0:
            return self.position
        return self._coerce[number](self.rows[self.position].get(self._keys[number]))

    def Next(self) -> None:
        self.position += 1

    def Close(self) -> None:
        self.rows = []
