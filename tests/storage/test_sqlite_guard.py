"""SQLite analyst connections: the authorizer and limits hold for any statement sent to
the connection directly (no text check in front of it)."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storage.engine import make_analyst_engine

VALUE_BYTES = 4096


@pytest.fixture
def guarded(sqlite_template: Path, tmp_path: Path) -> Iterator[Any]:
    path = tmp_path / "fleet.db"
    shutil.copy(sqlite_template, path)
    engine = make_analyst_engine(
        f"sqlite:///{path}", slots=1, wait=1, value_bytes=VALUE_BYTES, max_columns=100
    )
    pooled = engine.raw_connection()
    yield pooled.driver_connection
    pooled.close()
    engine.dispose()


@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH DATABASE ':memory:' AS other",
        "DETACH DATABASE main",
        "PRAGMA query_only = OFF",
        "PRAGMA table_info('hosts')",
        "BEGIN",
        "SAVEPOINT s",
        "INSERT INTO enroll_secrets (secret_hash, created_at) VALUES ('h', 1)",
        "UPDATE hosts SET hostname = 'x'",
        "DELETE FROM result_rows",
        "CREATE TEMP TABLE t (x)",
        "CREATE TEMP VIEW v AS SELECT 1",
        "DROP VIEW hunt_hosts",
        "ANALYZE",
        "VACUUM",
        "SELECT * FROM hosts",
        "SELECT count(*) FROM api_tokens",
        "SELECT token_hash FROM api_tokens",
        "WITH hunt_hosts AS (SELECT token_hash FROM api_tokens) SELECT * FROM hunt_hosts",
        "WITH answers AS (SELECT token_hash FROM api_tokens) SELECT * FROM answers",
        "SELECT name, sql FROM sqlite_master",
        "SELECT * FROM sqlite_schema",
        "SELECT * FROM pragma_table_info('hosts')",
        "SELECT * FROM dbstat",
        "SELECT load_extension('/tmp/nothing.so')",
        "SELECT fts3_tokenizer('simple')",
        "SELECT regexp('(a+)+$', 'aaaa')",
        "SELECT 'aaaa' REGEXP '(a+)+$'",
    ],
)
def test_the_authorizer_refuses(guarded: Any, statement: str) -> None:
    with pytest.raises(sqlite3.DatabaseError) as refused:
        guarded.execute(statement).fetchall()
    message = str(refused.value)
    # dbstat is built on first use, and building it needs a write the authorizer refuses
    assert any(word in message for word in ("authoriz", "prohibited", "vtable constructor"))


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM hunt_hosts",
        "SELECT count(*) FROM hunt_hosts",
        "SELECT count(*) FROM hunt_processes",
        "SELECT max(last_seen) FROM hunt_hosts",
        "SELECT h.rowid, h.host FROM hunt_hosts h",
        "SELECT * FROM hunt_results",
        "SELECT * FROM hunt_live_results",
        "SELECT * FROM hunt_rejected",
        "SELECT columns ->> 'port' AS port FROM hunt_results",
        "SELECT value FROM json_each('[1, 2]')",
        "SELECT * FROM hunt_hosts WHERE host_id IN (SELECT host_id FROM hunt_findings)",
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3) "
        "SELECT group_concat(i) FROM s",
        "SELECT strftime('%s', 'now') - 7 * 86400, upper('x'), hex(x'00'), round(1.5)",
    ],
)
def test_the_authorizer_allows_queries_over_the_views(guarded: Any, statement: str) -> None:
    assert isinstance(guarded.execute(statement).fetchall(), list)


def test_limits_bound_what_a_statement_can_build(guarded: Any) -> None:
    assert guarded.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED) == 0
    assert guarded.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) == VALUE_BYTES
    with pytest.raises(sqlite3.DataError, match="too big"):
        guarded.execute(f"SELECT randomblob({VALUE_BYTES + 1})").fetchall()
    with pytest.raises(sqlite3.DataError, match="too big"):
        guarded.execute("SELECT zeroblob(400000000)").fetchall()
    assert guarded.execute(f"SELECT length(randomblob({VALUE_BYTES}))").fetchall() == [
        (VALUE_BYTES,)
    ]
    with pytest.raises(sqlite3.Error):
        guarded.execute("SELECT ?", (1,)).fetchall()


def test_one_statement_at_a_time(guarded: Any) -> None:
    with pytest.raises(sqlite3.ProgrammingError, match="one statement at a time"):
        guarded.execute("SELECT 1; SELECT 2")
