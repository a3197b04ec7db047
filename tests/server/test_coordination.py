"""What server processes tell each other through the store, on SQLite and PostgreSQL:
detection versions and marks per slot, change events by time, fleet-wide locks, the row
changes a process keeps for the judge of a host it stored a batch of, and a detection
service that reads those instead of rebuilding the host."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqlalchemy.orm import Session

from fleetctl.server.auth import NodeKeyCache
from fleetctl.server.detection_service import Batch, DetectionService
from storage import coordination, fleet_locks
from storage import hosts as host_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.results import AppliedRows, ChangedRow


def enrolled(session: Session, n: int) -> int:
    """The id of host ``h<n>``, enrolled with a node key of its own."""
    host, *_ = host_store.enroll_host(
        session,
        host_identifier=f"h{n}",
        platform_type="9",
        host_details={"system_info": {"uuid": f"u{n}"}},
        node_key_hash=f"{n:064d}",
        now=1,
    )
    return int(host.id)


def test_versions_count_up_and_the_judge_catches_up_per_slot(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        with session_scope(sessions) as session:
            hosts = [enrolled(session, i) for i in range(4)]
        with session_scope(sessions) as session:
            assert coordination.mark_host(session, hosts[0], 100, rebuild=False) == 1
            assert coordination.mark_host(session, hosts[0], 105, rebuild=True) == 2
            assert coordination.mark_host(session, hosts[1], 110, rebuild=False) == 1
        with session_scope(sessions) as session:
            pending = {slot: coordination.pending_marks(session, 2, slot) for slot in (0, 1)}
            assert coordination.pending_summary(session) == (2, 100)
        marks = {m.host_id: m for slot in (0, 1) for m in pending[slot]}
        assert {h % 2 for h in marks} == {0, 1}  # each host in its own slot's list
        assert all(m.host_id % 2 == slot for slot in (0, 1) for m in pending[slot])
        assert (marks[hosts[0]].version, marks[hosts[0]].rebuild) == (2, True)
        assert marks[hosts[0]].marked_at == 100  # when it went pending, not the last mark
        with session_scope(sessions) as session:
            coordination.set_judged(session, [(hosts[0], 2), (hosts[1], 1)])
            coordination.set_judged(session, [(hosts[0], 1)])  # an older judgement stays old
        with session_scope(sessions) as session:
            assert coordination.pending_summary(session) == (0, None)
            assert coordination.mark_host(session, hosts[0], 200, rebuild=False) == 3
        with session_scope(sessions) as session:
            [mark] = coordination.pending_marks(session, 1, 0)
            assert (mark.version, mark.rebuild, mark.marked_at) == (3, False, 200)
    finally:
        engine.dispose()


def test_events_are_read_back_by_time_and_pruned(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        with session_scope(sessions) as session:
            coordination.publish(session, coordination.NODE_KEY, 7, 1000)
            coordination.publish(session, coordination.NODE_KEY, 8, 1050)
        with session_scope(sessions) as session:
            assert [h for _, _, h in coordination.recent_events(session, 1000)] == [7, 8]
            assert [h for _, _, h in coordination.recent_events(session, 1001)] == [8]
            assert coordination.prune_events(session, 1050) == 1
            assert [h for _, _, h in coordination.recent_events(session, 0)] == [8]
    finally:
        engine.dispose()


def test_a_fleet_lock_has_one_holder_until_it_lets_go(db_url: str, tmp_path: Path) -> None:
    engines = [make_engine(db_url), make_engine(db_url)]
    try:
        first = fleet_locks.try_lock(engines[0], tmp_path, fleet_locks.SLOT_BASE)
        assert first is not None and first.alive()
        assert fleet_locks.try_lock(engines[1], tmp_path, fleet_locks.SLOT_BASE) is None
        other = fleet_locks.try_lock(engines[1], tmp_path, fleet_locks.SLOT_BASE + 1)
        assert other is not None  # another key is another lock
        first.release()
        second = fleet_locks.try_lock(engines[1], tmp_path, fleet_locks.SLOT_BASE)
        assert second is not None
        second.release()
        other.release()
    finally:
        for engine in engines:
            engine.dispose()


def test_a_version_stored_elsewhere_is_read_from_the_store_not_rebuilt() -> None:
    service = DetectionService(sessions=None)  # type: ignore[arg-type]  # never reaches the store
    service.mark(5, version=1)
    service.mark(5, version=2)
    assert service._rebuild == {5: "unknown"}  # the first mark of an unknown host rebuilds
    service._rebuild.clear()
    service._changes.clear()
    service.mark(5, version=3)
    assert 5 not in service._rebuild  # follows the known version: row changes suffice
    service.mark(5, version=6)  # versions 4 and 5 were stored by another process
    assert 5 not in service._rebuild
    assert [(b.version, b.applied is None) for b in service._changes[5]] == [
        (3, False),
        (4, True),
        (5, True),
        (6, False),
    ]
    # Found in the store's marks instead: queued to read the same way, unless to rebuild.
    service._queue_stored([coordination.Mark(5, 7, False, 0)])
    assert service._changes[5][-1] == Batch(7, None) and 5 not in service._rebuild
    service._queue_stored([coordination.Mark(5, 8, True, 0)])
    assert service._rebuild == {5: "marked"} and 5 not in service._changes
    service.mark(5, version=9, rebuild=True)  # the first reason found is the one counted
    assert service._rebuild == {5: "marked"}


def test_kept_changes_come_back_as_stored_and_go_once_judged(db_url: str) -> None:
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        host = enrolled(session, 1)
    row = ChangedRow("a" * 32, {"pid": "7", "cmdline": "sh -i \u0000 é"}, 100)
    applied = [AppliedRows("pack_p_process_lineage", "process_lineage", (row,), (), False)]
    lone = ChangedRow("b" * 32, {"pid": "8", "cmdline": "\ud800"}, 100)  # not UTF-8
    with session_scope(factory) as session:
        coordination.keep_changes(session, host, 4, applied, 100)
        coordination.keep_changes(session, host, 5, [], 160)
        coordination.keep_changes(session, host, 6, [replace(applied[0], opened=(lone,))], 160)
    with session_scope(factory) as session:
        # Version 6 could not be written down: not kept, so its judge rebuilds the host.
        assert coordination.kept_changes(session, host, {4, 5, 6}) == {4: applied, 5: []}
        coordination.forget_changes(session, host, 4)
    with session_scope(factory) as session:
        assert coordination.kept_changes(session, host, {4, 5}) == {5: []}
        assert coordination.prune_changes(session, 161) == 1
        assert coordination.kept_changes(session, host, {5}) == {}
    engine.dispose()


def test_a_lookup_read_before_a_forget_is_not_remembered() -> None:
    cache = NodeKeyCache()
    read_at = cache.forgets
    cache.forget_hosts({1})  # another process re-enrolled host 1 meanwhile
    cache.put("old-key", 1, "web-1", "linux", read_at=read_at)
    assert cache.get("old-key") is None
    cache.put("new-key", 1, "web-1", "linux", read_at=cache.forgets)
    assert cache.get("new-key") is not None
