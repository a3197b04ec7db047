"""Analyst SQL on SQLite: one statement on a guarded connection, under a time limit.

The connection comes from the analyst engine (``storage.sqlite_guard``: read-only, the
hunting views only, ``SQLITE_LIMIT_LENGTH`` at the per-value cap). ``Cursor.execute``
refuses a second statement, found by SQLite's own tokenizer. The time limit is a
progress handler, as datasette's ``sqlite_timelimit``: SQLite calls it every few
thousand instructions and stops the statement once it answers non-zero.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Engine

from storage.analyst_sql.collect import Caps, Collector, SQLResult, first_line
from storage.analyst_sql.refused import Refused

PROGRESS_STEPS = 10_000


def run(engine: Engine, statement: str, caps: Caps) -> SQLResult:
    pooled = engine.raw_connection()
    conn: Any = pooled.driver_connection
    deadline = time.monotonic() + caps.timeout_s
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_STEPS)
    collector: Collector | None = None
    try:
        cursor = conn.cursor()
        try:
            cursor.execute(statement)
            collector = Collector([d[0] for d in cursor.description], caps)
            for values in cursor:  # row by row: an error names its row
                if not collector.add(values):
                    break
            return collector.result()
        finally:
            cursor.close()
    except sqlite3.Error as exc:
        row = collector.next_row if collector is not None else 1
        refused = pooled.info.get("refusals")
        raise Refused(_message(exc, row, caps, refused.last if refused else "")) from exc
    finally:
        conn.set_progress_handler(None, 0)
        pooled.close()


def _message(exc: sqlite3.Error, row: int, caps: Caps, refused: str = "") -> str:
    message = first_line(str(exc)) or type(exc).__name__
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_INTERRUPT":
        return f"query took longer than {caps.timeout_s:g} s and was stopped"
    if name == "SQLITE_TOOBIG":
        # SQLite stops a value before it exists, so which column it was is not known.
        return (
            f"a value of row {row} (or one the query builds) holds more than"
            f" {caps.value_bytes} bytes; select a substr() of it"
        )
    if "one statement at a time" in message:
        return "only one statement is allowed (no ';'-chained statements)"
    if "too many SQL variables" in message or "number of bindings" in message:
        return "parameters (?, :name, $name) are not supported: write the values in the SQL"
    if name == "SQLITE_AUTH" or "prohibited" in message or "authoriz" in message:
        return refused or f"{message}: analyst SQL reads the hunting views (hunt_*) only"
    if name == "SQLITE_READONLY" or "readonly" in message:
        return f"the store is read-only here: {message}"
    return message
