"""Run an analyst's SQL over the store, read-only, with a time limit.

Three guards, as datasette does: the text must be one statement that starts as a query
(``SELECT``, ``WITH`` or ``VALUES``); it runs on a connection the database itself keeps
read-only (SQLite ``query_only``, PostgreSQL ``default_transaction_read_only``), so a
write hidden in a CTE is refused by the database, not by parsing; and it is cut off
after a time limit (SQLite progress handler, PostgreSQL ``statement_timeout``).
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from fleetctl.errors import BadRequest

_QUERY_START = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(select|with|values)\b", re.IGNORECASE | re.DOTALL
)


@dataclass(frozen=True)
class SQLResult:
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool


def check_sql(sql: str) -> str:
    """One read statement, trailing ``;`` allowed; raise ``BadRequest`` otherwise."""
    stripped = sql.strip().rstrip(";").strip()
    if not stripped:
        raise BadRequest("empty SQL")
    if _statement_count(stripped) != 1:
        raise BadRequest("only one statement is allowed (no ';'-chained statements)")
    if not _QUERY_START.match(stripped):
        raise BadRequest("only read queries (SELECT, WITH ... SELECT, VALUES) are allowed")
    return stripped


def _statement_count(sql: str) -> int:
    """Statements in ``sql`` by SQLite's own tokenizer (quotes and comments respected)."""
    count, start = 0, 0
    for i, char in enumerate(sql):
        if char == ";" and sqlite3.complete_statement(sql[start : i + 1]):
            if sql[start : i + 1].strip(" ;\n\t"):
                count += 1
            start = i + 1
    if sql[start:].strip():
        count += 1
    return count


def run_readonly(
    session: Session, sql: str, *, limit: int = 10_000, timeout_s: float = 10.0
) -> SQLResult:
    """Run ``sql`` on a read-only session; at most ``limit`` rows come back."""
    statement = check_sql(sql)
    dialect = session.get_bind().dialect.name
    connection = session.connection()
    try:
        if dialect == "postgresql":
            connection.execute(text("SET TRANSACTION READ ONLY"))
            connection.execute(text(f"SET LOCAL statement_timeout = {int(timeout_s * 1000)}"))
            result = connection.execute(text(statement))
            return _collect(result, limit)
        raw: Any = connection.connection.driver_connection
        deadline = time.monotonic() + timeout_s
        raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
        try:
            return _collect(connection.execute(text(statement)), limit)
        finally:
            raw.set_progress_handler(None, 0)
    except DBAPIError as exc:
        message = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if "interrupted" in message or "statement timeout" in message:
            message = f"query took longer than {timeout_s:g} s and was stopped"
        elif "readonly" in message or "read-only" in message or "query_only" in message:
            message = f"the store is read-only here: {message}"
        raise BadRequest(message) from exc


def _collect(result: Any, limit: int) -> SQLResult:
    columns = list(result.keys())
    rows: list[dict[str, Any]] = []
    for row in result:
        if len(rows) == limit:
            return SQLResult(columns, rows, True)
        rows.append(dict(zip(columns, row, strict=True)))
    return SQLResult(columns, rows, False)
