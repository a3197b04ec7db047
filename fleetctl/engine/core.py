"""``Engine``: osquery SQL over the built-in tables, in an in-memory SQLite (APSW).

Each ``query()`` gets a fresh ``Scan`` and row cache, so every table it touches sees one
consistent read of /proc and a table scanned again inside a join (SQLite re-runs the
inner side of a nested loop) is not generated twice. Errors come back as
``QueryError`` with SQLite's own wording, which is osquery's too (``no such table: x``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import apsw

from fleetctl.engine import functions
from fleetctl.engine.errors import QueryError
from fleetctl.engine.vtable import TableModule
from fleetctl.schema import create_table_sql
from fleetctl.tables import TABLES, AgentRuntime, Row, Scan, TableSpec

# Actions refused by the authorizer: the database must stay in memory and unshared.
_DENIED = frozenset({apsw.SQLITE_ATTACH, apsw.SQLITE_DETACH})


@dataclass
class QueryResult:
    """Column names in result order and one dict per row with typed values."""

    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


class _QueryScope:
    """Scan plus generated rows for the duration of one query."""

    def __init__(self, scan: Scan) -> None:
        self.scan = scan
        self.cache: dict[tuple[str, frozenset[tuple[str, frozenset[Any]]]], list[Row]] = {}

    def rows(self, spec: TableSpec, constraints: dict[str, set[Any]]) -> list[Row]:
        key = (spec.name, frozenset((k, frozenset(v)) for k, v in constraints.items()))
        try:
            return self.cache[key]
        except KeyError:
            rows = spec.generate(constraints, self.scan)
            self.cache[key] = rows
            return rows


class Engine:
    """Run osquery SQL against ``tables`` (the built-in registry by default)."""

    def __init__(
        self,
        tables: Mapping[str, TableSpec] | None = None,
        *,
        runtime: AgentRuntime | None = None,
        proc_root: str = "/proc",
        etc_root: str = "/etc",
        utmp_path: str = "/var/run/utmp",
    ) -> None:
        self.tables: dict[str, TableSpec] = dict(TABLES if tables is None else tables)
        self.runtime = runtime if runtime is not None else AgentRuntime()
        # osquery_registry lists what this engine serves, so discovery sees the truth.
        self.runtime.tables = frozenset(self.tables)
        self._scan_args = {"etc_root": etc_root, "utmp_path": utmp_path}
        self._proc_root = proc_root
        self._lock = threading.RLock()
        self._scope: _QueryScope | None = None
        self._db = apsw.Connection(":memory:")
        self._db.authorizer = self._authorize
        functions.register(self._db)
        for name, spec in self.tables.items():
            module: Any = TableModule(spec, self._rows)  # duck-typed apsw.VTModule
            self._db.create_module(
                name, module, use_bestindex_object=True, eponymous_only=True, read_only=True
            )

    # -- public API

    def query(self, sql: str) -> QueryResult:
        """Run one or more ``;``-separated statements; rows of all of them, in order.

        Raises QueryError; its ``partial`` holds the rows produced before the failure
        (osqueryi prints those before the error).
        """
        with self._lock:
            result = QueryResult()
            seen: dict[str, None] = {}
            descriptions: list[tuple[tuple[str, str | None], ...]] = []

            def trace(cursor: apsw.Cursor, statement: str, bindings: Any) -> bool:
                description = cursor.get_description()
                descriptions.append(description)
                for name, _decl in description:
                    seen.setdefault(name, None)
                return True

            self._scope = _QueryScope(
                Scan(self._proc_root, runtime=self.runtime, **self._scan_args)
            )
            try:
                cursor = self._db.cursor()
                cursor.exec_trace = trace
                for values in cursor.execute(sql):
                    names = [d[0] for d in descriptions[-1]]
                    result.rows.append(dict(zip(names, values, strict=True)))
            except apsw.Error as error:
                result.columns = list(seen)
                raise QueryError(_message(error), partial=result) from error
            except Exception as error:
                # A table generator failed (say EMFILE while walking /proc). Callers such
                # as the agent loop report query errors; they must not crash on one.
                result.columns = list(seen)
                raise QueryError(f"{type(error).__name__}: {error}", partial=result) from error
            finally:
                self._scope = None
            result.columns = list(seen)
            return result

    def columns(self, sql: str) -> list[tuple[str, str | None]]:
        """(name, declared type) of a statement's result columns without running it."""
        with self._lock:
            try:
                cursor = self._db.cursor()
                cursor.exec_trace = lambda *args: False  # stop before the first step
                with contextlib.suppress(apsw.ExecTraceAbort):
                    cursor.execute(sql)
                return list(cursor.get_description())
            except apsw.Error as error:
                raise QueryError(_message(error)) from error

    def table_names(self) -> list[str]:
        return sorted(self.tables)

    def schema(self, name: str) -> str:
        """The CREATE TABLE statement of a table (hidden columns marked HIDDEN)."""
        if name not in self.tables:
            raise QueryError(f"no such table: {name}")
        spec = self.tables[name]
        return create_table_sql(spec.name, spec.columns)

    # -- internals

    def _rows(self, spec: TableSpec, constraints: dict[str, set[Any]]) -> list[Row]:
        scope = self._scope
        if scope is None:  # a cursor used outside query(): still answer, uncached
            return spec.generate(
                constraints, Scan(self._proc_root, runtime=self.runtime, **self._scan_args)
            )
        return scope.rows(spec, constraints)

    @staticmethod
    def _authorize(action: int, *args: Any) -> int:
        return apsw.SQLITE_DENY if action in _DENIED else apsw.SQLITE_OK


def _message(error: apsw.Error) -> str:
    """SQLite's message without APSW's ``XxxError:`` prefix."""
    text = str(error)
    name = type(error).__name__
    if text.startswith(name + ": "):
        text = text[len(name) + 2 :]
    return text
