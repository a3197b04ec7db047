"""Analyst SQL (``fleetctl sql``): one read query over the hunting views, in a box.

Everything an analyst sends may be hostile, so no guard here depends on reading the
text: ``check_sql`` only gives an early, friendly answer to the obvious mistakes.

- One statement, by the database itself: PostgreSQL parses the text as one
  extended-protocol statement (Parse refuses ``;``-chained statements whatever the
  quoting, ``E'...'`` strings included); Python's sqlite3 refuses a second statement
  after SQLite's own tokenizer.
- Least privilege, by the database: a PostgreSQL login role that may read the hunting
  views only (``storage.analyst_role``), in read-only transactions; on SQLite read-only
  connections whose authorizer allows reads of the views and nothing else
  (``storage.sqlite_guard``).
- Bounded: a time limit, at most ``Caps.rows`` rows and ``Caps.total_bytes`` bytes
  (``truncated`` with a reason), and no value over ``Caps.value_bytes`` ever reaches this
  process (SQLite's length limit; on PostgreSQL a wrapper that sizes each value in the
  database first, see ``postgres``).

Exceptions: ``Refused`` for everything the analyst can fix (the admin API answers 400).
"""

from __future__ import annotations

import re

from sqlalchemy import Engine

from storage.analyst_sql import postgres, sqlite
from storage.analyst_sql.collect import Caps, SQLResult
from storage.analyst_sql.refused import Refused
from storage.sqlite_guard import MAX_SQL_BYTES

__all__ = ["Caps", "Refused", "SQLResult", "check_sql", "run"]

_FIRST_WORD = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*\(*\s*([a-z_]+)\b", re.IGNORECASE | re.DOTALL
)
# Statements that are not queries, answered early with what is allowed. Any other first
# word goes to the database, whose syntax error names the fault ("SELEC 1").
# fmt: off
_NOT_QUERIES = frozenset((
    "abort", "alter", "analyze", "attach", "begin", "call", "checkpoint", "close", "cluster",
    "comment", "commit", "copy", "create", "deallocate", "declare", "delete", "detach",
    "discard", "do", "drop", "end", "execute", "explain", "fetch", "grant", "import", "insert",
    "listen", "load", "lock", "merge", "move", "notify", "pragma", "prepare", "reassign",
    "refresh", "reindex", "release", "replace", "reset", "revoke", "rollback", "savepoint",
    "security", "set", "show", "start", "truncate", "unlisten", "update", "upsert", "vacuum",
))
# fmt: on


def check_sql(sql: str) -> str:
    """The text without trailing ``;`` and blanks, if it can be a query; raise
    ``Refused`` early for what plainly is not. Not a guard: the database decides."""
    statement = sql.strip().rstrip(";").rstrip()
    if not statement:
        raise Refused("empty SQL")
    if len(statement.encode()) > MAX_SQL_BYTES:
        raise Refused(f"the SQL is longer than {MAX_SQL_BYTES} bytes")
    first = _FIRST_WORD.match(statement)
    if first and first.group(1).lower() in _NOT_QUERIES:
        raise Refused(
            f"only read queries (SELECT, WITH ... SELECT, VALUES) are allowed,"
            f" not {first.group(1).upper()}"
        )
    return statement


def run(engine: Engine, sql: str, caps: Caps) -> SQLResult:
    """Run ``sql`` on an analyst engine (``storage.engine.make_analyst_engine``)."""
    statement = check_sql(sql)
    if engine.dialect.name == "postgresql":
        return postgres.run(engine, statement, caps)
    return sqlite.run(engine, statement, caps)
