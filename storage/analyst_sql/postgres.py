"""Analyst SQL on PostgreSQL: one extended-protocol statement, wrapped so that caps hold
in the database before any value travels.

1. The text alone goes through Parse and Describe (``PGconn.prepare`` and
   ``describe_prepared``, libpq's PQprepare): Parse refuses ``;``-chained statements
   whatever the quoting, and Describe gives the result columns. The text is never split
   or rewritten here, and never passes through SQLAlchemy ``text()`` (which would read
   ``:name`` as a bind parameter).
2. Only a text that parsed as one complete statement is put in a wrapper; inside
   ``( ... \\n)`` its tokens mean the same (the newline ends a trailing ``--`` comment),
   so it cannot reach out of the parentheses. The wrapper renames the columns
   ``c1..cn``, measures each value as text in the database, returns a value only if it
   is within ``value_bytes`` and the running total of the answer within
   ``total_bytes``, says which column is over (``_over``), and stops at ``rows + 1``.
3. The wrapper runs as a psycopg server-side cursor: its DECLARE is sent with
   ``force_extended=True`` (``ServerCursorMixin._declare_gen``: PQsendQueryParams, which
   never falls back to the simple protocol), and rows come in batches of ``BATCH``.

The transaction is read-only with ``statement_timeout`` set before each statement to
what is left of the time limit; the engine's reset (``DISCARD ALL``) ends the session
state afterwards. Dates, times and intervals come back as PostgreSQL's own text, and
JSON as it is stored, so no value is lost or reformatted.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg
from psycopg import errors, pq
from psycopg.adapt import Loader
from psycopg.types.string import TextLoader
from sqlalchemy import Engine

from storage.analyst_sql.collect import Caps, Collector, SQLResult, first_line, too_big
from storage.analyst_sql.refused import Refused

BATCH = 1000
CURSOR = "fleetctl_analyst"
TEXT_TYPES = ("date", "time", "timetz", "timestamp", "timestamptz", "interval")
SESSION = (
    "SET TRANSACTION READ ONLY",
    "SET LOCAL TimeZone = 'UTC'",
    "SET LOCAL DateStyle = 'ISO'",
)


class JSONFragmentLoader(Loader):
    """json/jsonb as the JSON text PostgreSQL sent, embedded as is (any depth)."""

    def load(self, data: Any) -> orjson.Fragment:
        return orjson.Fragment(bytes(data))


def run(engine: Engine, statement: str, caps: Caps) -> SQLResult:
    pooled = engine.raw_connection()
    try:
        conn: psycopg.Connection[Any] = pooled.driver_connection  # type: ignore[assignment]
        return _run(conn, statement, caps, time.monotonic() + caps.timeout_s)
    except psycopg.Error as exc:
        raise Refused(_message(exc, caps)) from exc
    finally:
        pooled.close()  # the engine's reset rolls back and runs DISCARD ALL


def _run(conn: psycopg.Connection[Any], statement: str, caps: Caps, deadline: float) -> SQLResult:
    for setting in SESSION:
        conn.execute(setting)
    _time_left(conn, deadline, caps)
    columns = describe(conn, statement)
    if not columns:
        raise Refused("only read queries (SELECT, WITH ... SELECT, VALUES) are allowed")
    if len(columns) > caps.columns:
        raise Refused(f"the query returns {len(columns)} columns; at most {caps.columns}")
    collector = Collector(columns, caps)
    with conn.cursor(name=CURSOR) as cursor:
        _load_as_text(cursor)
        cursor.execute(wrap(statement, len(columns), caps))
        while not collector.full:
            _time_left(conn, deadline, caps)
            batch = cursor.fetchmany(BATCH)
            for *values, over, total in batch:
                if over is not None:
                    raise too_big(collector.columns[over - 1], collector.next_row, caps)
                if total > caps.total_bytes:
                    collector.stop_at_bytes()
                if collector.full or not collector.add(values):
                    break
            if len(batch) < BATCH:
                break
    return collector.result()


def describe(conn: psycopg.Connection[Any], statement: str) -> list[str]:
    """The result columns of ``statement``, after Parse proved it is one statement."""
    pgconn = conn.pgconn
    _check(conn, pgconn.prepare(b"", statement.encode()))  # unnamed statement
    described = pgconn.describe_prepared(b"")
    _check(conn, described)
    if described.nparams:
        raise Refused("parameters ($1, ...) are not supported")
    return [(described.fname(i) or b"?").decode() for i in range(described.nfields)]


def _check(conn: psycopg.Connection[Any], result: pq.abc.PGresult) -> None:
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise errors.error_from_result(result, encoding=conn.info.encoding)


def wrap(statement: str, ncolumns: int, caps: Caps) -> str:
    """The caps around one parsed statement (see the module docstring)."""
    cols = [f"c{i}" for i in range(1, ncolumns + 1)]
    sizes = [f"pg_catalog.octet_length(_q.{c}::text)::int8" for c in cols]
    over = ", ".join(f"{size} > {caps.value_bytes}" for size in sizes)
    total = " + ".join(f"coalesce({size}, 0)" for size in sizes)
    within = f"_w._over IS NULL AND _w._total <= {caps.total_bytes}"
    values = ", ".join(f"CASE WHEN {within} THEN _w.{c} END" for c in cols)
    return (
        f"SELECT {values}, _w._over, _w._total FROM ("
        f"SELECT _s.*, pg_catalog.sum(_s._bytes) OVER (ROWS UNBOUNDED PRECEDING) AS _total"
        f" FROM (SELECT _q.*, pg_catalog.array_position(ARRAY[{over}], true) AS _over,"
        f" {total} AS _bytes FROM ({statement}\n) AS _q({', '.join(cols)})) AS _s"
        f") AS _w LIMIT {caps.rows + 1}"
    )


def _load_as_text(cursor: psycopg.ServerCursor[Any]) -> None:
    for name in TEXT_TYPES:
        cursor.adapters.register_loader(name, TextLoader)
    for name in ("json", "jsonb"):
        cursor.adapters.register_loader(name, JSONFragmentLoader)


def _time_left(conn: psycopg.Connection[Any], deadline: float, caps: Caps) -> None:
    """Give the next statement what is left of the time limit (per statement otherwise)."""
    left_ms = int((deadline - time.monotonic()) * 1000)
    if left_ms <= 0:
        raise Refused(f"query took longer than {caps.timeout_s:g} s and was stopped")
    conn.execute(f"SET LOCAL statement_timeout = {left_ms}")


def _message(exc: psycopg.Error, caps: Caps) -> str:
    message = first_line(exc.diag.message_primary or str(exc)) or type(exc).__name__
    if isinstance(exc, errors.QueryCanceled):
        return f"query took longer than {caps.timeout_s:g} s and was stopped"
    if "multiple commands" in message:
        return "only one statement is allowed (no ';'-chained statements)"
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return f"the store is read-only here: {message}"
    if isinstance(exc, errors.InsufficientPrivilege):
        return f"{message}: analyst SQL reads the hunting views (hunt_*) only"
    return message
