"""Incremental detection through the real ingest path, on SQLite and PostgreSQL.

Random hosts (``ipc_streams``) log their queries as osqueryd does: a ``counter = 0``
baseline, then differential runs, with snapshots mixed in. ``node_service.ingest_log``
stores each batch and returns the rows the store opened and closed; the detection
service moves the host's state forward with them. After every batch its paths must equal
those built from scratch from the store's open rows (and from the host's own rows).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from fleetctl.detection import HostSnapshot, build_paths
from fleetctl.server import node_service
from fleetctl.server.detection_service import DETECTION_QUERIES, Batch, DetectionService
from storage import coordination
from storage import hosts as host_store
from storage import results as result_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.runs import row_hash
from tests.detection.ipc_streams import EVENT_QUERIES, QUERIES, IpcHost, Row
from tests.detection.test_incremental import normalized

PACK = "pack_ipc-telemetry_"


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def enroll(sessions: sessionmaker[Session], name: str) -> int:
    with session_scope(sessions) as session:
        host, *_ = host_store.enroll_host(
            session,
            host_identifier=name,
            platform_type="9",
            host_details={"system_info": {"uuid": f"u-{name}"}},
            node_key_hash=name.ljust(64, "k"),
            now=1,
        )
        return host.id


@dataclass
class Logger:
    """Turns a host's rows into osqueryd log lines: diffs against what it logged last,
    or snapshots, per query; exec events as added-only diffs."""

    name: str
    rng: random.Random
    counters: dict[str, int] = field(default_factory=dict)
    logged: dict[str, dict[str, Row]] = field(default_factory=dict)

    def line(self, query: str, t: int, **rest: Any) -> dict[str, Any]:
        return {
            "name": PACK + query,
            "hostIdentifier": self.name,
            "unixTime": t,
            "epoch": 0,
            "numerics": False,
            **rest,
        }

    def lines(self, rows: dict[str, list[Row]], events: list[Row], t: int) -> list[Any]:
        out: list[Any] = []
        for query in QUERIES:
            if query in EVENT_QUERIES:
                if events:  # osqueryd logs no empty run, and counts only those it logs
                    counter = self.counters.get(query, -1) + 1
                    self.counters[query] = counter
                    out += [
                        self.line(query, t, counter=counter, columns=r, action="added")
                        for r in events
                    ]
                continue
            now = {row_hash(r): r for r in rows[query]}
            if query in self.logged and self.rng.random() < 0.25:
                snap = list(now.values())
                out.append(self.line(query, t, counter=0, action="snapshot", snapshot=snap))
            else:
                old = self.logged.get(query, {})
                if query in self.logged and old.keys() == now.keys():
                    continue
                counter = self.counters.get(query, -1) + 1
                self.counters[query] = counter
                out += [
                    self.line(query, t, counter=counter, columns=r, action="removed")
                    for h, r in old.items()
                    if h not in now
                ]
                out += [
                    self.line(query, t, counter=counter, columns=r, action="added")
                    for h, r in now.items()
                    if h not in old
                ]
            self.logged[query] = now
        return out


def from_store(session: Session, host_id: int, name: str, at: int, window: int) -> HostSnapshot:
    """The from-scratch snapshot: every open detection row of the host, by hash."""
    results = []
    for state in result_store.query_names(session, host_id):
        if state.query not in DETECTION_QUERIES:
            continue
        rows = result_store.open_rows(session, host_id, state.name)
        if state.query in EVENT_QUERIES:
            rows = [r for r in rows if r.first_seen is not None and r.first_seen >= at - window]
        ordered = sorted(rows, key=lambda r: r.hash)
        results.append((state.query, [dict(r.columns) for r in ordered]))
    return HostSnapshot.from_queries(name, results, observed_at=float(at))


@pytest.mark.parametrize("seed", [11, 12])
def test_ingested_streams_keep_incremental_paths_equal_to_the_store(
    sessions: sessionmaker[Session], seed: int
) -> None:
    name = f"stream-{seed}"
    host_id = enroll(sessions, name)
    host = IpcHost(seed)
    logger = Logger(name, random.Random(seed))
    service = DetectionService(sessions, learning_window=200)
    rebuilt = 0
    for batch in range(12):
        if batch:
            host.step()
        at = host.now
        lines = logger.lines(host.rows(), host.take_events(), at)
        if batch == 8:  # osqueryd lost its database: lineage restarts with a baseline
            logger.counters["process_lineage"] = -1
            logger.logged.pop("process_lineage")
            lines = logger.lines(host.rows(), [], at)
        with session_scope(sessions) as session:
            stats = node_service.ingest_log(
                session, host_id, "result", lines, at, collect=DETECTION_QUERIES.__contains__
            )
        service.mark(host_id, stats.applied, rebuild=bool(stats.markers))
        rebuild = host_id in service._rebuild
        rebuilt += bool(rebuild or batch == 0)
        service.judge_changes(host_id, [Batch(None, stats.applied)], rebuild, at)
        service._dirty.clear()
        service._changes.clear()
        service._rebuild.clear()
        kept = service._hosts[host_id][0]
        with session_scope(sessions) as session:
            expected = build_paths(from_store(session, host_id, name, at, 600))
        assert normalized(kept.paths.values()) == normalized(expected)
        if batch == 8:
            assert rebuild  # a rebaseline after diffs is data loss: rebuilt from the store
    status = service.status()
    # Rebuilt on the first batch (the host unknown) and on recorded data loss (batch 8's
    # rebaseline, the counter gaps after it) only; every other batch moved the state
    # forward, and the paths above stayed equal to the store's.
    assert status.hosts_judged == 12 and status.full_rebuilds == rebuilt
    assert status.incremental == 12 - rebuilt >= 6


@pytest.mark.parametrize("seed", [21, 22])
def test_batches_stored_by_another_process_move_the_judge_forward(
    sessions: sessionmaker[Session], seed: int
) -> None:
    """Two of three posts land on a process that does not judge the host (``serve
    --workers``): it keeps their row changes under their version, as ``osquery_api``
    does. The judge finds them from the store's marks or as a gap before its own next
    version, moves the host forward from them in version order, and never rebuilds it
    after the first batch; its paths stay equal to the store's and nothing stays kept."""
    name = f"shared-{seed}"
    host_id = enroll(sessions, name)
    host = IpcHost(seed)
    logger = Logger(name, random.Random(seed))
    service = DetectionService(sessions, learning_window=200)
    rng = random.Random(seed)
    judged = 0
    for batch in range(14):
        if batch:
            host.step()
        at = host.now
        lines = logger.lines(host.rows(), host.take_events(), at)
        foreign = batch % 3 != 0
        with session_scope(sessions) as session:
            stats = node_service.ingest_log(
                session, host_id, "result", lines, at, collect=DETECTION_QUERIES.__contains__
            )
            assert stats.applied and not stats.markers
            version = coordination.mark_host(session, host_id, at, rebuild=False)
            if foreign:
                coordination.keep_changes(session, host_id, version, stats.applied, at)
        if not foreign:
            service.mark(host_id, stats.applied, version=version)
        elif rng.random() < 0.5 or batch == 13:  # the owner reads the store's marks
            with session_scope(sessions) as session:
                service._queue_stored(coordination.pending_marks(session, 1, 0))
        if rng.random() < 0.3 and batch != 13:
            continue  # the judge is busy: batches queue up
        if host_id not in service._dirty:
            continue  # only foreign batches the owner has not read of yet
        batches, reaches = service._changes.pop(host_id, []), service._versions[host_id]
        service.judge_changes(host_id, batches, host_id in service._rebuild, at, reaches=reaches)
        judged += 1
        service._dirty.clear()
        service._rebuild.clear()
        service._pending_rows.clear()
        if reaches < version:  # foreign batches the owner has not read of yet
            continue
        kept = service._hosts[host_id][0]
        with session_scope(sessions) as session:
            expected = build_paths(from_store(session, host_id, name, at, 600))
        assert normalized(kept.paths.values()) == normalized(expected)
    status = service.status()
    assert status.full_rebuilds == 1 and status.incremental == judged - 1 >= 5
    with session_scope(sessions) as session:
        assert coordination.kept_changes(session, host_id, range(1, 15)) == {}
