"""Host bookkeeping in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from storage import hosts as host_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import Host


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
