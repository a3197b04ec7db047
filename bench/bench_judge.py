"""What one steady-state judgement costs the server, beside the detection work alone.

``fleet_sim.py`` says how many hosts the server sustains; this says where a judgement's
time goes, in a minute rather than a quarter of an hour. ``--hosts`` simulated hosts of
``fleet_hosts.py`` (about 400 processes each, with their stdio, pipe and socket rows)
are enrolled in a new store, their differential baselines ingested (``ingest_log``, as
``POST /log`` stores them) and judged once. Then, for ``--intervals`` 60 s intervals,
each host churns (about 3% of its processes), its differential batch is ingested and
``DetectionService.judge_changes`` judges it, as a server's judge does.

For each judgement it measures the wall time, the thread's CPU time and the statements
sent. The baseline, measured in the same run on the same batches: the detection work
alone, with the state in memory (``HostDetection`` moved forward, the changed keys'
paths grouped and judged by a ``Detector`` that holds the host's whole history). The
ratio is what the store adds: reading the history the judgement consults and writing
what it changed.

    .venv/bin/python bench/bench_judge.py                          # PostgreSQL and SQLite
    .venv/bin/python bench/bench_judge.py --hosts 200 --backends postgresql
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from bench_server import make_db, release_db
from fleet_hosts import MODELLED, Host, QueryState, run_lines
from sqlalchemy import event

from fleetctl.detection import Baseline, DetectionState, Detector
from fleetctl.detection.incremental import HostDetection
from fleetctl.detection.state import HostState
from fleetctl.server.detection_service import DETECTION_QUERIES, Batch, DetectionService
from fleetctl.server.node_service import ingest_log
from storage import hosts as host_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.migrate import upgrade
from storage.results import AppliedRows

PACK = "ipc-telemetry"
T0 = 1_700_000_000
INTERVAL = 60
LEARNING = 600  # s: past it after the baselines, so churned paths are judged as new
QUERIES = tuple(
    sorted(q for q in MODELLED if q in DETECTION_QUERIES and q != "process_exec_events")
)


@dataclass
class Costs:
    """Per-judgement samples: wall and CPU seconds, statements sent."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)

    def line(self, label: str) -> str:
        wall = sorted(self.wall)
        return (
            f"  {label:<34} wall p50 {1000 * statistics.median(wall):7.1f} ms"
            f"  p95 {1000 * wall[int(0.95 * (len(wall) - 1))]:7.1f} ms"
            f"  cpu mean {1000 * statistics.fmean(self.cpu):7.1f} ms"
            + (f"  statements {statistics.fmean(self.statements):5.1f}" if self.statements else "")
        )


def lines_of(host: Host, states: dict[str, QueryState], at: int) -> list[dict[str, Any]]:
    """The host's differential lines for one interval of every detection query."""
    out: list[bytes] = []
    for query in QUERIES:
        state = states.setdefault(query, QueryState())
        out += run_lines(host, f"pack_{PACK}_{query}", query, "SELECT 1", False, True, state, at)[0]
    return [orjson.loads(line) for line in out]


def enroll(sessions: Any, hosts: Sequence[Host]) -> list[int]:
    ids = []
    with session_scope(sessions) as session:
        for host in hosts:
            row, *_ = host_store.enroll_host(
                session,
                host_identifier=host.identifier,
                platform_type="9",
                host_details={"system_info": {"uuid": host.uuid, "hostname": host.identifier}},
                node_key_hash=f"{host.identifier:x<64}"[:64],
                now=T0,
            )
            ids.append(int(row.id))
    return ids


def ingest(sessions: Any, host_id: int, lines: list[dict[str, Any]], at: int) -> list[AppliedRows]:
    with session_scope(sessions) as session:
        stats = ingest_log(
            session, host_id, "result", lines, at, collect=DETECTION_QUERIES.__contains__
        )
    return list(stats.applied)


def in_memory(
    memory: HostDetection, detector: Detector, applied: list[AppliedRows], at: int
) -> None:
    """The baseline: the same batch through the detection work alone."""
    for run in applied:
        memory.change(run.name, run.query, run.opened, run.closed)
    update = memory.full_rebuild(at) if not memory.by_key else memory.update(at)
    paths = memory.group(set(update.keys), at)
    detector.detect(paths, float(at), unchanged=memory.unchanged(paths, update))
    memory.judged(update.keys, at)


def run(backend: str, hosts: int, intervals: int) -> None:
    url = make_db(backend)
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        fleet = [Host(i, 7000 + i, T0) for i in range(hosts)]
        ids = enroll(sessions, fleet)
        service = DetectionService(sessions, learning_window=LEARNING)
        states: list[dict[str, QueryState]] = [{} for _ in fleet]
        detection = DetectionState(started_at=float(T0))
        detection.hosts = {h.identifier: HostState(first_seen=float(T0)) for h in fleet}
        detector = Detector(Baseline.default(), detection, learning_window=LEARNING)
        memory = [service.new_host(h.identifier) for h in fleet]
        sent = [0]

        def count(*_: object) -> None:
            sent[0] += 1

        event.listen(engine, "before_cursor_execute", count)
        first, store, alone = Costs(), Costs(), Costs()
        ingest_seconds: list[float] = []
        for step in range(intervals + 1):
            # The baselines come while the hosts learn; the churn after, judged as new.
            at = T0 + INTERVAL if step == 0 else T0 + LEARNING + step * INTERVAL
            for i, (host, host_id) in enumerate(zip(fleet, ids, strict=True)):
                if step:
                    host.churn(at)
                began = time.perf_counter()
                applied = ingest(sessions, host_id, lines_of(host, states[i], at), at)
                ingest_seconds.append(time.perf_counter() - began)
                costs = first if step == 0 else store
                sent[0] = 0
                wall, cpu = time.perf_counter(), time.thread_time()
                service.judge_changes(host_id, [Batch(None, applied)], False, at)
                costs.cpu.append(time.thread_time() - cpu)
                costs.wall.append(time.perf_counter() - wall)
                costs.statements.append(sent[0])
                wall, cpu = time.perf_counter(), time.thread_time()
                in_memory(memory[i], detector, applied, at)
                if step:
                    alone.cpu.append(time.thread_time() - cpu)
                    alone.wall.append(time.perf_counter() - wall)
        event.remove(engine, "before_cursor_execute", count)
        print(f"\n== {backend}: {hosts} hosts, {intervals} intervals of churn after the baselines")
        print(first.line("first judgement (full rebuild)"))
        print(store.line("judgement of one interval"))
        print(alone.line("baseline: detection work alone"))
        ratio = statistics.fmean(store.cpu) / statistics.fmean(alone.cpu)
        print(
            f"  store-backed / detection alone (cpu): {ratio:.2f}x;"
            f" ingest of one batch p50 {1000 * statistics.median(ingest_seconds):.1f} ms"
        )
    finally:
        engine.dispose()
        release_db(backend, url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--intervals", type=int, default=3)
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        run(backend, args.hosts, args.intervals)


if __name__ == "__main__":
    main()
