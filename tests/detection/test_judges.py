"""Several judges in one process (``DetectionService.judges``), on SQLite and PostgreSQL:
hosts are judged at once, one judge per host at a time, a host held up does not hold up
the others, and what each judge keeps equals a from-scratch build from the store."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from fleetctl.detection import build_paths
from fleetctl.server import node_service
from fleetctl.server.detection_service import DETECTION_QUERIES, Batch, DetectionService
from storage.engine import session_scope
from tests.detection.ipc_streams import IpcHost
from tests.detection.live import wait_until
from tests.detection.test_incremental import normalized
from tests.detection.test_incremental_store import Logger, enroll, from_store, sessions

__all__ = ["sessions"]  # the fixture, on both databases


@pytest.fixture
def service(sessions: sessionmaker[Session]) -> Iterator[DetectionService]:
    running = DetectionService(sessions, learning_window=200, settle=0.0, judges=3)
    running.start()
    yield running
    running.stop()


def first_batch(sessions: sessionmaker[Session], name: str, seed: int) -> tuple[int, Any]:
    """A new host enrolled and its first batch stored: its id and the rows it opened."""
    host_id = enroll(sessions, name)
    host, logger = IpcHost(seed), Logger(name, random.Random(seed))
    lines = logger.lines(host.rows(), host.take_events(), host.now)
    with session_scope(sessions) as session:
        stats = node_service.ingest_log(
            session, host_id, "result", lines, host.now, collect=DETECTION_QUERIES.__contains__
        )
    return host_id, stats.applied


def kept_paths(service: DetectionService, host_id: int) -> list[object] | None:
    with service._memory:
        kept = service._hosts.get(host_id)
    return None if kept is None else normalized(kept[0].paths.values())


def test_hosts_streamed_to_three_judges_keep_the_paths_the_store_gives(
    sessions: sessionmaker[Session], service: DetectionService
) -> None:
    """Four hosts post in turn, ten batches each, marked as ingest marks them; the judges
    take them as they come. Once they caught up, every host's paths are the store's."""
    hosts = {}
    for seed in range(31, 35):
        name = f"judged-{seed}"
        hosts[enroll(sessions, name)] = (name, IpcHost(seed), Logger(name, random.Random(seed)))
    for batch in range(10):
        for host_id, (_, host, logger) in hosts.items():
            if batch:
                host.step()
            lines = logger.lines(host.rows(), host.take_events(), host.now)
            with session_scope(sessions) as session:
                stats = node_service.ingest_log(
                    session,
                    host_id,
                    "result",
                    lines,
                    host.now,
                    collect=DETECTION_QUERIES.__contains__,
                )
            service.mark(host_id, stats.applied, rebuild=bool(stats.markers))
    assert service.wait_judged(60)
    status = service.status()
    assert status.judges == 3 and status.hosts_judged >= len(hosts)
    assert status.incremental > 0  # hosts moved forward, not rebuilt every time
    judged_at = int(time.time())  # the judges judge at the wall clock's time
    for host_id, (name, _, _) in hosts.items():
        with session_scope(sessions) as session:
            expected = build_paths(from_store(session, host_id, name, judged_at, 600))
        assert kept_paths(service, host_id) == normalized(expected), name


def test_a_host_held_up_holds_up_only_itself(
    sessions: sessionmaker[Session], service: DetectionService
) -> None:
    """While something else holds one host's turn (an admin's run, a replay), the other
    host is judged; the held host waits, is judged once released, and ``wait_judged``
    reports the wait until then."""
    held_id, held_rows = first_batch(sessions, "held", 41)
    free_id, free_rows = first_batch(sessions, "free", 42)
    with service.turn(held_id):
        service.mark(held_id, held_rows)
        service.mark(free_id, free_rows)
        wait_until(lambda: kept_paths(service, free_id) is not None, what="the free host judged")
        assert kept_paths(service, held_id) is None
        assert service.wait_judged(0.3) is False  # the held host is still waiting
    assert service.wait_judged(30)
    assert kept_paths(service, held_id)


def test_a_judgement_reads_the_fleets_hosts_only_when_its_view_is_old(
    sessions: sessionmaker[Session],
) -> None:
    """The fleet's hosts (names, enrolment, explicit baselines) are read once per
    ``FLEET_VIEW_TTL`` and for a host not in the view yet, not for every judgement: at
    10,000 hosts that read was 30,000 rows per judgement."""
    service = DetectionService(sessions, learning_window=200)
    ids = [first_batch(sessions, f"viewed-{seed}", seed) for seed in (51, 52, 53)]
    statements: list[str] = []
    engine = sessions.kw["bind"]

    def seen(conn: object, cursor: object, statement: str, *rest: object) -> None:
        statements.append(statement)

    def fleet_reads() -> int:
        return sum(1 for s in statements if "FROM hosts" in s and "WHERE" not in s)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        (first, first_rows), (second, second_rows), (third, third_rows) = ids
        service.judge_changes(first, [Batch(None, first_rows)], False, int(time.time()))
        assert fleet_reads() == 1
        service.judge_changes(second, [Batch(None, second_rows)], False, int(time.time()))
        assert fleet_reads() == 1  # the view is fresh and holds the host
        service._fleet = dataclasses.replace(service._fleet, read_at=0.0)  # type: ignore[arg-type]
        service.judge_changes(third, [Batch(None, third_rows)], False, int(time.time()))
        assert fleet_reads() == 2  # an old view is read again
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert all(kept_paths(service, host_id) for host_id, _ in ids)
