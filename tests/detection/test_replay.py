"""A replay of stored history equals a full judgement at every change time, on SQLite
and PostgreSQL.

Random hosts (``ipc_streams``) log several hours of history through the real ingest
path: a baseline, differential runs and snapshots, exec events, quiet gaps longer than
the store's sighting precision. The history is then replayed twice over the same store:
as ``fleetctl detect --since`` used to (``run_host`` at every change time: an as-of
snapshot, every path judged, then the current state), and with ``replay_host`` (one
read of the history, one state moved forward, only changed keys judged). What each
leaves in the store (findings, occurrences with their documents, finding history, path
sightings, parent history) must be the same.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from fleetctl.server import node_service
from fleetctl.server.detection_replay import replay_host, replay_times
from fleetctl.server.detection_service import DETECTION_QUERIES, DetectionService
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import (
    FindingChange,
    FindingOccurrence,
    FindingRecordRow,
    ParentChild,
    PathSighting,
)
from tests.detection.ipc_streams import IpcHost
from tests.detection.test_incremental_store import Logger, enroll

DETECTION_TABLES = (FindingChange, FindingOccurrence, FindingRecordRow, ParentChild, PathSighting)


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def log_history(
    sessions: sessionmaker[Session], seed: int, batches: int, start: int | None = None
) -> tuple[int, int]:
    """A host's history through ingest, from ``start`` (default: the generator's fixed
    time); (host id, the time of its last batch)."""
    name = f"replayed-{seed}"
    host_id = enroll(sessions, name)
    host = IpcHost(seed) if start is None else IpcHost(seed, now=start)
    logger = Logger(name, random.Random(seed))
    rng = random.Random(seed * 7)
    for batch in range(batches):
        if batch:
            host.step()
            if rng.random() < 0.3:  # a quiet spell: sightings grow older than their precision
                host.now += rng.randint(1800, 5400)
        lines = logger.lines(host.rows(), host.take_events(), host.now)
        with session_scope(sessions) as session:
            node_service.ingest_log(
                session, host_id, "result", lines, host.now, collect=DETECTION_QUERIES.__contains__
            )
    return host_id, host.now


def per_time(service: DetectionService, host_id: int, since: int, until: int) -> None:
    """The replay as it was: a full judgement at every change time, then now."""
    with session_scope(service.sessions) as session:
        times = replay_times(session, host_id, since, until)
    for at in [*times, None]:
        service.run_host(host_id, until, at=at)


def stored(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """What detection left in the store, in an order that does not depend on row ids."""
    with session_scope(sessions) as session:
        findings = sorted(
            (
                *(f.id, f.host_id, f.path_key, f.pid, f.parent, f.child, f.severity, f.score),
                *(f.status, f.new_on_host, f.new_on_fleet, f.seen_during_learning),
                *(f.first_seen, f.last_seen),
            )
            for f in session.scalars(select(FindingRecordRow))
        )
        occurrences = sorted(
            (
                o.finding_id,
                o.pid,
                o.start_time or 0,
                o.severity,
                o.score,
                o.seen_during_learning,
                o.first_seen,
                o.last_seen,
                repr(sorted(o.document.items())),
            )
            for o in session.scalars(select(FindingOccurrence))
        )
        changes = sorted(
            (c.finding_id, c.at, c.field, c.old or "", c.new, c.actor)
            for c in session.scalars(select(FindingChange))
        )
        sightings = sorted(
            (s.host_id, s.path_key, s.first_seen, s.last_seen)
            for s in session.scalars(select(PathSighting))
        )
        parents = sorted(
            (p.host_id, p.parent, p.child, p.first_seen)
            for p in session.scalars(select(ParentChild))
        )
    return {
        "findings": findings,
        "occurrences": occurrences,
        "changes": changes,
        "sightings": sightings,
        "parents": parents,
    }


def forget(sessions: sessionmaker[Session]) -> None:
    """Everything detection stored, gone: the next replay starts where the first did."""
    with session_scope(sessions) as session:
        for table in DETECTION_TABLES:
            session.execute(delete(table))


@pytest.mark.parametrize("seed", [3, 4])
def test_replay_equals_a_full_judgement_at_every_change_time(
    sessions: sessionmaker[Session], seed: int
) -> None:
    hosts = [log_history(sessions, seed * 10 + i, batches=14) for i in range(2)]
    until = max(last for _, last in hosts)
    since = until - 86_400
    service = DetectionService(sessions, learning_window=200)
    for host_id, _ in hosts:
        per_time(service, host_id, since, until)
    expected = stored(sessions)
    forget(sessions)

    replayed = DetectionService(sessions, learning_window=200)
    judged = 0
    for host_id, _ in hosts:
        with session_scope(sessions) as session:
            times = replay_times(session, host_id, since, until)
        done = replay_host(replayed, host_id, times, until)
        assert done.times == len(times) + 1
        judged += done.paths_judged
    got = stored(sessions)

    assert expected["findings"], "the generated history must raise findings to compare"
    assert expected["occurrences"] and expected["sightings"] and expected["parents"]
    for table in expected:
        assert got[table] == expected[table], table
    # The state it leaves in memory is the host as it is now, every path built.
    for host_id, _ in hosts:
        kept = replayed._hosts[host_id][0]
        fresh = service._hosts[host_id][0]
        assert kept.by_key.keys() == fresh.by_key.keys()


def test_replay_from_after_the_last_change_judges_the_current_state_only(
    sessions: sessionmaker[Session],
) -> None:
    host_id, last = log_history(sessions, 99, batches=4)
    service = DetectionService(sessions, learning_window=200)
    with session_scope(sessions) as session:
        times = replay_times(session, host_id, last + 1, last + 10)
    assert times == []
    done = replay_host(service, host_id, times, last + 10)
    assert done.times == 1 and done.paths_judged > 0
