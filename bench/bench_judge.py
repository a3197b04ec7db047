"""What detection costs the server per host, beside the detection work alone.

``fleet_sim.py`` says how many hosts the server sustains; this says where a judgement's
time goes, in minutes rather than a quarter of an hour. ``--hosts`` simulated hosts of
``fleet_hosts.py`` (about 400 processes each, with their stdio, pipe and socket rows)
are enrolled in a new store. Each batch they send is ingested (``ingest_log``, as
``POST /log`` stores it) and judged by ``DetectionService.judge_changes``, as a server's
judge does. Two ways to batch (``--posts``):

- ``scheduled`` (the default): as osqueryd posts. Each host runs the shipped packs'
  schedule for a Linux host (the config ``fleetctl serve`` gives it, each query at its
  splayed interval: lineage every 60 s, stdio every 120 s, sockets every 300 s ...),
  churns every 60 s and flushes its buffered lines every 4 s, for ``--minutes`` virtual
  minutes. A host's queries come due at different moments, so it posts, and is judged,
  about three times a minute, each batch holding a part of what changed.
- ``interval``: every detection query of one 60 s interval in one batch, for
  ``--intervals`` intervals after the baselines: the least a host can be judged.

Judgements are measured once the learning window and the first run of every query are
behind (the baselines' full rebuilds are reported on their own): wall time, the thread's
CPU time and the statements sent, per judgement and per host-minute, with the ingest's
CPU beside them. The baseline, measured in the same run on the same batches: the
detection work alone, with the state in memory (``HostDetection`` moved forward, the
changed keys' paths grouped and judged by a ``Detector`` that holds the host's whole
history). The ratio is what the store adds: reading the history the judgement consults
and writing what it changed. The last line turns the CPU per host-minute into hosts per
core for this server work alone (no HTTP, TLS or distributed reads; the database's own
CPU not counted).

    .venv/bin/python bench/bench_judge.py                          # PostgreSQL and SQLite
    .venv/bin/python bench/bench_judge.py --hosts 50 --backends postgresql --posts interval
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from bench_server import make_db, release_db
from fleet_hosts import LOGGER_PERIOD, MAX_LINES, MODELLED, Agent, Host, QueryState, run_lines
from sqlalchemy import event

from fleetctl.detection import Baseline, DetectionState, Detector
from fleetctl.detection.incremental import HostDetection
from fleetctl.detection.state import HostState
from fleetctl.server.bootstrap import apply_shipped_packs_to_a_new_store
from fleetctl.server.detection_service import DETECTION_QUERIES, Batch, DetectionService
from fleetctl.server.node_service import PackIndex, ingest_log
from fleetctl.server.osquery_config import config_for
from fleetctl.server.supervisor import tune_interpreter
from fleetctl.settings import Settings
from storage import hosts as host_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.migrate import upgrade
from storage.results import AppliedRows

PACK = "ipc-telemetry"
T0 = 1_700_000_000
INTERVAL = 60
LEARNING = 600  # s: past it after the baselines, so churned paths are judged as new
SETTLE = 660  # s of a scheduled run not measured: the learning window and every baseline
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


@dataclass(frozen=True)
class Post:
    """One batch of one host: when, whose (index into the fleet), its lines, and whether
    it is measured (after the settling)."""

    at: int
    host: int
    lines: list[dict[str, Any]]
    measured: bool


def lines_of(host: Host, states: dict[str, QueryState], at: int) -> list[dict[str, Any]]:
    """The host's differential lines for one interval of every detection query."""
    out: list[bytes] = []
    for query in QUERIES:
        state = states.setdefault(query, QueryState())
        out += run_lines(host, f"pack_{PACK}_{query}", query, "SELECT 1", False, True, state, at)[0]
    return [orjson.loads(line) for line in out]


def interval_posts(fleet: Sequence[Host], intervals: int) -> Iterator[Post]:
    """``--posts interval``: the baselines, then one batch per host and interval."""
    states: list[dict[str, QueryState]] = [{} for _ in fleet]
    for step in range(intervals + 1):
        # The baselines come while the hosts learn; the churn after, judged as new.
        at = T0 + INTERVAL if step == 0 else T0 + LEARNING + step * INTERVAL
        for i, host in enumerate(fleet):
            if step:
                host.churn(at)
            yield Post(at, i, lines_of(host, states[i], at), step > 0)


def scheduled_posts(agents: Sequence[Agent], minutes: int) -> Iterator[Post]:
    """``--posts scheduled``: what each host's osqueryd posts, in time order."""
    churn = [T0 + a.host.rng.uniform(0, INTERVAL) for a in agents]
    buffers: list[list[bytes]] = [[] for _ in agents]
    previous = T0
    for tick in range(1, minutes * INTERVAL // LOGGER_PERIOD + 1):
        at = T0 + tick * LOGGER_PERIOD
        for i, agent in enumerate(agents):
            if at >= churn[i]:
                agent.host.churn(at)
                churn[i] += INTERVAL
            buffers[i] += [line.data for line in agent.run(agent.due(previous, at), at)]
            if buffers[i]:
                batch, buffers[i] = buffers[i][:MAX_LINES], buffers[i][MAX_LINES:]
                yield Post(at, i, [orjson.loads(b) for b in batch], at >= T0 + SETTLE)
        previous = at


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


def configured(url: str, sessions: Any, fleet: Sequence[Host], ids: list[int]) -> list[Agent]:
    """Each host's osqueryd state after it fetched its config: the shipped packs, as a
    new server stores them, scheduled for a Linux host."""
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), db=url)
        apply_shipped_packs_to_a_new_store(settings)
        agents = []
        with session_scope(sessions) as session:
            for host, host_id in zip(fleet, ids, strict=True):
                agent = Agent(host)
                doc = config_for(session, host_id, "linux", settings)
                agent.configure(orjson.loads(orjson.dumps(doc)))
                agents.append(agent)
    return agents


def ingest(
    sessions: Any, host_id: int, lines: list[dict[str, Any]], at: int, packs: PackIndex
) -> list[AppliedRows]:
    with session_scope(sessions) as session:
        stats = ingest_log(
            session, host_id, "result", lines, at, packs, collect=DETECTION_QUERIES.__contains__
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


def run(backend: str, args: argparse.Namespace) -> None:
    url = make_db(backend)
    engine = make_engine(url)
    try:
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        fleet = [Host(i, 7000 + i, T0) for i in range(args.hosts)]
        ids = enroll(sessions, fleet)
        if args.posts == "scheduled":
            posts = scheduled_posts(configured(url, sessions, fleet, ids), args.minutes)
            measured_minutes = args.minutes - SETTLE / INTERVAL
        else:
            posts = interval_posts(fleet, args.intervals)
            measured_minutes = args.intervals
        with session_scope(sessions) as session:
            packs = PackIndex.of(session)
        service = DetectionService(sessions, learning_window=LEARNING)
        detection = DetectionState(started_at=float(T0))
        detection.hosts = {h.identifier: HostState(first_seen=float(T0)) for h in fleet}
        detector = Detector(Baseline.default(), detection, learning_window=LEARNING)
        memory = [service.new_host(h.identifier) for h in fleet]
        sent = [0]

        def count(*_: object) -> None:
            sent[0] += 1

        event.listen(engine, "before_cursor_execute", count)
        first, store, alone = Costs(), Costs(), Costs()
        ingest_cpu: list[float] = []
        judged: set[int] = set()
        for post in posts:
            cpu = time.thread_time()
            applied = ingest(sessions, ids[post.host], post.lines, post.at, packs)
            if post.measured:
                ingest_cpu.append(time.thread_time() - cpu)
            if not applied:
                continue
            costs = first if post.host not in judged else store if post.measured else None
            judged.add(post.host)
            sent[0] = 0
            wall, cpu = time.perf_counter(), time.thread_time()
            service.judge_changes(ids[post.host], [Batch(None, applied)], False, post.at)
            if costs is not None:
                costs.cpu.append(time.thread_time() - cpu)
                costs.wall.append(time.perf_counter() - wall)
                costs.statements.append(sent[0])
            wall, cpu = time.perf_counter(), time.thread_time()
            in_memory(memory[post.host], detector, applied, post.at)
            if costs is store:
                alone.cpu.append(time.thread_time() - cpu)
                alone.wall.append(time.perf_counter() - wall)
        event.remove(engine, "before_cursor_execute", count)
        report(backend, args, first, store, alone, ingest_cpu, measured_minutes)
    finally:
        engine.dispose()
        release_db(backend, url)


def report(
    backend: str,
    args: argparse.Namespace,
    first: Costs,
    store: Costs,
    alone: Costs,
    ingest_cpu: list[float],
    minutes: float,
) -> None:
    host_minutes = args.hosts * minutes
    how = f"{args.minutes} min as scheduled" if args.posts == "scheduled" else "one batch"
    print(f"\n== {backend}: {args.hosts} hosts, posts {args.posts} ({how})")
    print(first.line("first judgement (full rebuild)"))
    print(store.line("judgement of one batch"))
    print(alone.line("baseline: detection work alone"))
    ratio = statistics.fmean(store.cpu) / statistics.fmean(alone.cpu)
    print(f"  store-backed / detection alone (cpu): {ratio:.2f}x")
    judge = 1000 * sum(store.cpu) / host_minutes
    ingested = 1000 * sum(ingest_cpu) / host_minutes
    print(
        f"  per host-minute: {len(store.cpu) / host_minutes:.2f} judgements, judge cpu"
        f" {judge:.1f} ms (detection alone {1000 * sum(alone.cpu) / host_minutes:.1f}),"
        f" ingest cpu {ingested:.1f} ms over {len(ingest_cpu) / host_minutes:.2f} posts"
    )
    print(
        f"  hosts per core for ingest and judging alone: {60_000 / (judge + ingested):,.0f}"
        " (no HTTP, TLS, distributed reads or database CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--posts", choices=("scheduled", "interval"), default="scheduled")
    parser.add_argument("--minutes", type=int, default=20, help="virtual, scheduled posts")
    parser.add_argument("--intervals", type=int, default=3, help="interval posts")
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = parser.parse_args()
    tune_interpreter()  # the garbage collector as the server's judges run it
    if args.posts == "scheduled" and args.minutes * INTERVAL <= SETTLE:
        parser.error(f"--minutes must be more than {SETTLE // INTERVAL} (the settling)")
    for backend in args.backends.split(","):
        run(backend, args)


if __name__ == "__main__":
    main()
