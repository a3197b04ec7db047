"""Host bookkeeping in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, select

from storage import detection as detection_store
from storage import hosts as host_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import Host
from tests.conftest import _truncate_pg
from tests.storage.hosts import enrolled_host


def test_touch_hosts_writes_each_hosts_own_time_across_chunks(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as session:
        ids = [
            host_store.enroll_host(
                session,
                host_identifier=f"h{i}",
                platform_type="9",
                host_details={"system_info": {"uuid": f"u{i}"}},
                node_key_hash=f"{i:064d}",
                now=1,
            )[0].id
            for i in range(7)
        ]
    seen = {host_id: 100 + (n % 2) for n, host_id in enumerate(ids[:6])}  # h6 not seen
    with session_scope(sessions) as session:
        host_store.touch_hosts(session, seen, chunk=2)
    with session_scope(sessions) as session:
        stored = {i: t for i, t in session.execute(select(Host.id, Host.last_seen))}
    assert stored == {**seen, ids[6]: 1}
    engine.dispose()


def test_learning_hosts_holds_a_host_enrolled_while_it_reads(pg_database: str) -> None:
    """A host committed by another connection between two of ``learning_hosts``'s
    statements is listed whole or not at all: the hosts are read once. PostgreSQL only:
    each of its statements reads its own snapshot, where SQLite's reading transaction
    keeps one (and its writer would wait for it)."""
    _truncate_pg(pg_database)
    engine, elsewhere = make_engine(pg_database), make_engine(pg_database)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as session:
        first = enrolled_host(session, "h1", "u1")
    statements: list[str] = []

    def enroll_meanwhile(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(sql)
        if len(statements) == 2:
            with session_scope(make_sessionmaker(elsewhere)) as other:
                enrolled_host(other, "h2", "u2", "2" * 64)

    event.listen(engine, "before_cursor_execute", enroll_meanwhile)
    try:
        with session_scope(sessions) as session:
            listed = detection_store.learning_hosts(session)
    finally:
        event.remove(engine, "before_cursor_execute", enroll_meanwhile)
        elsewhere.dispose()
    assert len(statements) >= 2  # the enrolment did come between two statements
    assert [(hid, name) for hid, name, _, _ in listed][:1] == [(first, "h1")]
    assert all(enrolled == 1 and at is None for _, _, enrolled, at in listed)
    engine.dispose()
