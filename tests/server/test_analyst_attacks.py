"""A hostile analyst against a real server: every attack of a hostile run against
``fleetctl sql`` is refused or harmless, on both stores, through the admin API.

After each attack the store is unchanged (row counts of every table, read as the
owner), and the server's own sessions still ingest and answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.base import metadata
from storage.engine import make_engine
from tests.conftest import RunningServer

# What COPY ... TO PROGRAM would create as the database server's user (which may write
# /tmp); fixed, so that parallel test workers collect the same test ids.
MARKER = Path("/tmp/fleetctl-analyst-copy-to-program")


def result_line(name: str, unix_time: int, pid: str) -> dict[str, Any]:
    return {
        "name": name,
        "unixTime": unix_time,
        "counter": 0,
        "epoch": 0,
        "columns": {"pid": pid, "name": "sh"},
        "action": "added",
    }


# Written by the server on its own clock (each detection worker's status, every second).
HEARTBEATS = frozenset({"detection_workers"})


def store_counts(db_url: str) -> dict[str, int]:
    """Rows per table but the heartbeats, read with the store's own (owner) engine."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.scalar(select(func.count()).select_from(t)) or 0
                for t in metadata.sorted_tables
                if t.name not in HEARTBEATS
            }
    finally:
        engine.dispose()


@pytest.fixture
def fleet(server: RunningServer) -> Any:
    """Host 1 with result rows, and the admin client."""
    MARKER.unlink(missing_ok=True)
    node = server.node()
    node.enroll()
    node.log("result", [result_line("q", 100, "42"), result_line("q", 100, "43")])
    return node, server.admin()


def sql(admin: Any, query: str) -> Any:
    return admin.post("/api/v1/admin/sql", json={"sql": query})


# Each is refused on both databases: on SQLite by the one-statement rule, the
# authorizer or a missing function; on PostgreSQL by Parse, the role or a revoked grant.
ATTACKS = [
    # E'...' strings: a SQLite tokenizer counted one statement here.
    "SELECT E'\\''; COMMIT; BEGIN READ WRITE; DELETE FROM result_rows; COMMIT; --'",
    "SELECT E'\\'' AS x; DELETE FROM result_rows; --'",
    "SELECT E'\\\\'''; DELETE FROM hosts; --'",
    f"SELECT E'\\''; COPY (SELECT 1) TO PROGRAM 'touch {MARKER}'; --'",
    f"SELECT 1; COPY (SELECT 1) TO PROGRAM 'touch {MARKER}'",
    "SELECT $a$ ' $a$; DELETE FROM result_rows; --'",
    # SQL text run by functions, around the one-statement rule
    "SELECT query_to_xml('DELETE FROM result_rows RETURNING 1', true, false, '')",
    f"SELECT query_to_xml('COPY (SELECT 1) TO PROGRAM ''touch {MARKER}''', true, false, '')",
    "SELECT ts_stat('DELETE FROM result_rows RETURNING to_tsvector(''a'')')",
    # settings and session state
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT set_config('role', 'postgres', false)",
    "SELECT set_config('statement_timeout', '0', false)",
    # files, large objects, signals, notifications
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_ls_dir('.')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT lo_from_bytea(0, 'persisted')",
    "SELECT lo_create(0)",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "SELECT pg_notify('fleet', 'hello')",
    # writes hidden in a query
    "WITH gone AS (DELETE FROM result_rows RETURNING 1) SELECT count(*) FROM gone",
    "SELECT * FROM hunt_hosts FOR UPDATE",
    # SQLite's own doors
    "SELECT load_extension('/tmp/nothing.so')",
    "SELECT fts3_tokenizer('simple')",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM pragma_table_info('hosts')",
    "SELECT * FROM dbstat",
    "SELECT * FROM sqlite_dbpage",
]


@pytest.mark.parametrize("query", ATTACKS)
def test_attack_is_refused_and_the_store_unchanged(fleet: Any, db_url: str, query: str) -> None:
    node, admin = fleet
    before = store_counts(db_url)
    answer = sql(admin, query)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]
    # Nothing changed but the audit trail, which now holds the attempt.
    assert store_counts(db_url) == {**before, "audit_log": before["audit_log"] + 1}
    [attempt] = admin.get("/api/v1/admin/audit").json()["audit"][-1:]
    assert (attempt["details"]["body"]["sql"], attempt["outcome"]) == (query, "refused")
    assert not MARKER.exists()
    # the server's own sessions are alive: ingest and admin reads still work
    node.log("result", [result_line("q", 200, "44")])
    assert store_counts(db_url)["result_rows"] == before["result_rows"] + 1
    assert admin.get("/api/v1/admin/hosts").status_code == 200


def test_advisory_lock_on_host_1_does_not_stall_its_ingest(fleet: Any, db_url: str) -> None:
    """Ingest takes pg_advisory_xact_lock(host_id); the analyst may not take host 1's."""
    node, admin = fleet
    answer = sql(admin, "SELECT pg_advisory_lock(1)")
    assert answer.status_code == 400
    if db_url.startswith("postgresql"):
        assert answer.json()["error"].startswith("permission denied for function pg_advisory_lock")
    node.log("result", [result_line("q", 300, "45")])
    rows = sql(admin, "SELECT count(*) AS n FROM hunt_hosts").json()["rows"]
    assert rows == [{"n": 1}]
    assert store_counts(db_url)["result_rows"] == 3


def test_protocol_refuses_what_the_text_check_lets_through(fleet: Any, db_url: str) -> None:
    """The friendly text check sees a SELECT; only the database's parser sees the chain."""
    _, admin = fleet
    answer = sql(admin, "SELECT E'\\''; DELETE FROM result_rows; --'")
    assert answer.status_code == 400
    if db_url.startswith("postgresql"):
        assert answer.json()["error"] == (
            "only one statement is allowed (no ';'-chained statements)"
        )
    assert store_counts(db_url)["result_rows"] == 2
