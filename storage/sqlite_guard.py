"""What an analyst's SQL may do on a SQLite store: read the hunting views, nothing else.

SQLite asks an authorizer about every column read, function call and statement kind
while it compiles a statement, so the policy holds whatever the text looks like:

- SELECT (and recursive CTEs); no PRAGMA, ATTACH, transaction control or any write;
- reads of the hunting views, and of exactly the (view, table, column) triples SQLite
  reports while compiling each view. The authorizer's last argument names the view a
  read happens for, but a CTE reports its own name there too, so
  ``WITH hunt_hosts AS (SELECT token_hash FROM api_tokens) ...`` would pass a test on
  the name alone; the triples of the real views do not include ``api_tokens``;
- ``sqlite_master``, ``dbstat``, ``sqlite_dbpage`` and the pragma table-valued functions
  are refused: the views' columns are documented, and ``SELECT * FROM hunt_x LIMIT 0``
  shows them, so nothing needs the schema of the tables behind them;
- the built-in functions a query needs, by name; not ``load_extension``,
  ``fts3_tokenizer`` or ``regexp`` (SQLAlchemy registers it in Python, where a
  backtracking pattern would hold the interpreter beyond the time limit).

``sqlite3.Connection.setlimit`` bounds what one statement can build: a value longer than
``value_bytes`` fails inside SQLite (``string or blob too big``) before it exists.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable

Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]
ViewReads = frozenset[tuple[str, str, str]]

MAX_SQL_BYTES = 100_000

# json_each/json_tree are table-valued functions: reading them reads only their argument.
TABLE_FUNCTIONS = frozenset({"json_each", "json_tree"})

ALLOWED_FUNCTIONS = frozenset(
    {
        # core scalar functions
        "abs", "char", "coalesce", "concat", "concat_ws", "format", "glob", "hex", "if",
        "ifnull", "iif", "instr", "length", "like", "likelihood", "likely", "lower",
        "ltrim", "max", "min", "nullif", "octet_length", "printf", "quote", "random",
        "randomblob", "replace", "round", "rtrim", "sign", "soundex", "sqlite_version",
        "substr", "substring", "trim", "typeof", "unhex", "unicode", "unistr",
        "unlikely", "upper", "zeroblob",
        # date and time
        "date", "time", "datetime", "julianday", "unixepoch", "strftime", "timediff",
        "current_date", "current_time", "current_timestamp",
        # aggregates and window functions
        "avg", "count", "group_concat", "string_agg", "sum", "total", "row_number",
        "rank", "dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead",
        "first_value", "last_value", "nth_value",
        # math
        "acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "ceil", "ceiling",
        "cos", "cosh", "degrees", "exp", "floor", "ln", "log", "log10", "log2", "mod",
        "pi", "pow", "power", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
        # JSON
        "->", "->>", "json", "json_array", "json_array_length", "json_error_position",
        "json_extract", "json_insert", "json_object", "json_patch", "json_pretty",
        "json_quote", "json_remove", "json_replace", "json_set", "json_type",
        "json_valid", "json_group_array", "json_group_object", "jsonb", "jsonb_array",
        "jsonb_extract", "jsonb_insert", "jsonb_object", "jsonb_patch", "jsonb_remove",
        "jsonb_replace", "jsonb_set", "jsonb_group_array", "jsonb_group_object",
    }
)  # fmt: skip


def limits(value_bytes: int, max_columns: int) -> dict[int, int]:
    """``setlimit`` values for an analyst connection."""
    return {
        sqlite3.SQLITE_LIMIT_LENGTH: value_bytes,
        sqlite3.SQLITE_LIMIT_SQL_LENGTH: MAX_SQL_BYTES,
        sqlite3.SQLITE_LIMIT_COLUMN: max_columns,
        sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 100,
        sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,
        sqlite3.SQLITE_LIMIT_VDBE_OP: 100_000,
        sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 100,
        sqlite3.SQLITE_LIMIT_ATTACHED: 0,
        sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 10_000,
        sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 0,
        sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 0,
        sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
    }


def view_reads(conn: sqlite3.Connection, views: Iterable[str]) -> ViewReads:
    """The (view or CTE inside it, table, column) reads SQLite reports while compiling
    each view: all the views read on an analyst's behalf."""
    seen: set[tuple[str, str, str]] = set()

    def record(action: int, table: str | None, column: str | None, _db: object, ctx: object) -> int:
        if action == sqlite3.SQLITE_READ and ctx is not None and table is not None:
            seen.add((str(ctx), table, column or ""))
        return sqlite3.SQLITE_OK

    conn.set_authorizer(record)
    try:
        for view in views:
            conn.execute(f'SELECT * FROM "{view}" LIMIT 0').fetchall()
    finally:
        conn.set_authorizer(None)
    return frozenset(seen)


def analyst_authorizer(views: Iterable[str], reads: ViewReads) -> Authorizer:
    """The authorizer of an analyst connection (see the module docstring)."""
    readable = frozenset(views) | TABLE_FUNCTIONS
    behind_views = frozenset(table for _, table, _ in reads)

    def authorize(
        action: int, arg1: str | None, arg2: str | None, _db: str | None, ctx: str | None
    ) -> int:
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            allowed = (arg2 or "").lower() in ALLOWED_FUNCTIONS
            return sqlite3.SQLITE_OK if allowed else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_READ and arg1 is not None:
            if arg1 in readable or (ctx, arg1, arg2 or "") in reads:
                return sqlite3.SQLITE_OK
            # A read of no column (count(*) over a view SQLite flattened) shows no values.
            if not arg2 and arg1 in behind_views:
                return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY

    return authorize


def guard(
    conn: sqlite3.Connection, views: Iterable[str], value_bytes: int, max_columns: int
) -> None:
    """Make ``conn`` an analyst connection: read-only, limited, and authorized as above."""
    views = tuple(views)
    conn.execute("PRAGMA query_only = ON")
    reads = view_reads(conn, views)
    for limit, value in limits(value_bytes, max_columns).items():
        conn.setlimit(limit, value)
    conn.set_authorizer(analyst_authorizer(views, reads))
