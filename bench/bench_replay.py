"""Replay benchmark: ``fleetctl detect --since`` over a fleet's history, new job beside the
old per-time re-judgement, in the same run, on SQLite and PostgreSQL.

History: ``--hosts`` simulated servers (``fleet_hosts.Host``: about 400 processes with
their stdio, pipe, FIFO and socket rows) log the shipped pack's snapshot queries once,
then after each of ``--intervals`` 60 s intervals of 3% churn (a FIFO-fed shell started
on every fifth host halfway, so there is something to find), through the real ingest
path. Then the same history is replayed twice over the same store:

* old: what ``POST /detect`` with ``since`` did, a full judgement (as-of read of every
  query, full parse, every path judged) at every change time, then the current state;
* new: a replay job (``ReplayJobs``: one read of each query's history, one state moved
  forward, only changed keys judged), run to its end.

Detection's tables are emptied between the two, and what each stored (findings,
occurrences, sightings) is compared. Printed: seconds of each, the ratio, and the time
per host per judged time.

    .venv/bin/python bench/bench_replay.py [--hosts 200] [--intervals 10] [--backend both]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fleet_hosts import Host  # noqa: E402

from fleetctl.server import node_service  # noqa: E402
from fleetctl.server.detection_replay import replay_times  # noqa: E402
from fleetctl.server.detection_service import DETECTION_QUERIES, DetectionService  # noqa: E402
from fleetctl.server.replay_jobs import ReplayJobs  # noqa: E402
from storage import detection_jobs as job_store  # noqa: E402
from storage import hosts as host_store  # noqa: E402
from storage.engine import make_engine, make_sessionmaker, session_scope  # noqa: E402
from storage.migrate import upgrade  # noqa: E402
from storage.models import (  # noqa: E402
    FindingChange,
    FindingOccurrence,
    FindingRecordRow,
    ParentChild,
    PathSighting,
)

PG_ADMIN = os.environ.get("FLEETCTL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
PACK = "pack_ipc-telemetry_"
QUERIES = (
    "process_lineage",
    "stdio_channels",
    "pipe_partners",
    "unix_sockets",
    "unix_listeners",
    "named_fifos",
    "logged_in_users",
)
INTERVAL = 60
DETECTION_TABLES = (FindingChange, FindingOccurrence, FindingRecordRow, ParentChild, PathSighting)


def snapshot_lines(host: Host, at: int) -> list[dict[str, Any]]:
    """One collection of the pack's snapshot queries, as osqueryd logs it."""
    return [
        {
            "name": PACK + query,
            "hostIdentifier": host.identifier,
            "unixTime": at,
            "epoch": 0,
            "counter": 0,
            "numerics": False,
            "action": "snapshot",
            "snapshot": [orjson.loads(row) for row in host.rows(query)],
        }
        for query in QUERIES
    ]


def log_fleet(sessions: sessionmaker[Session], hosts: int, intervals: int, t0: int) -> list[int]:
    """The fleet's history through ingest; the host ids."""
    ids = []
    for index in range(hosts):
        host = Host(index, seed=15, now=t0)
        with session_scope(sessions) as session:
            row, *_ = host_store.enroll_host(
                session,
                host_identifier=host.identifier,
                platform_type="9",
                host_details={"system_info": {"uuid": host.uuid}},
                node_key_hash=uuid.uuid4().hex.ljust(64, "k"),
                now=t0 - 10 * 86_400,  # past its learning window: new paths are judged
            )
            ids.append(row.id)
        for step in range(intervals + 1):
            at = t0 + step * INTERVAL
            if step:
                host.churn(at)
            if step == intervals // 2 and index % 5 == 0:
                host.add_canary(at)
            with session_scope(sessions) as session:
                node_service.ingest_log(
                    session,
                    ids[-1],
                    "result",
                    snapshot_lines(host, at),
                    at,
                    collect=DETECTION_QUERIES.__contains__,
                )
    return ids


def old_replay(sessions: sessionmaker[Session], hosts: list[int], since: int, until: int) -> None:
    """``POST /detect`` with ``since`` as it was: a full judgement per change time."""
    service = DetectionService(sessions)
    for host_id in hosts:
        with session_scope(sessions) as session:
            times = replay_times(session, host_id, since, until)
        for at in [*times, None]:
            service.run_host(host_id, until, at=at)


def new_replay(
    sessions: sessionmaker[Session],
    readonly: sessionmaker[Session],
    hosts: list[int],
    since: int,
    until: int,
) -> dict[str, Any]:
    """A replay job, run to its end; the job as it ended."""
    jobs = ReplayJobs(DetectionService(sessions), readonly, worker="bench")
    job_id = jobs.start(since, until, hosts, "bench")
    jobs.wait(job_id)
    with session_scope(readonly) as session:
        job = job_store.get(session, job_id)
        assert job is not None
        return {"state": job.state, "times": job.times_done, "findings": len(job.new_findings)}


def stored(sessions: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    """What detection stored, independent of row ids."""
    with session_scope(sessions) as session:
        return {
            "findings": sorted(
                (f.id, f.severity, f.score, f.first_seen, f.last_seen)
                for f in session.scalars(select(FindingRecordRow))
            ),
            "occurrences": sorted(
                (o.finding_id, o.pid, o.start_time or 0, o.first_seen, o.last_seen)
                for o in session.scalars(select(FindingOccurrence))
            ),
            "sightings": sorted(
                (s.host_id, s.path_key, s.first_seen, s.last_seen)
                for s in session.scalars(select(PathSighting))
            ),
        }


def forget(sessions: sessionmaker[Session]) -> None:
    with session_scope(sessions) as session:
        for table in DETECTION_TABLES:
            session.execute(delete(table))


def run(url: str, label: str, hosts: int, intervals: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    ro = make_engine(url, readonly=True)
    readonly = make_sessionmaker(ro)
    try:
        t0 = int(time.time()) - (intervals + 2) * INTERVAL
        started = time.perf_counter()
        ids = log_fleet(sessions, hosts, intervals, t0)
        logged = time.perf_counter() - started
        until = int(time.time())
        with session_scope(sessions) as session:
            judged = sum(len(replay_times(session, h, t0, until)) + 1 for h in ids)

        started, cpu = time.perf_counter(), time.process_time()
        old_replay(sessions, ids, t0, until)
        old, old_cpu = time.perf_counter() - started, time.process_time() - cpu
        expected = stored(sessions)
        forget(sessions)

        started, cpu = time.perf_counter(), time.process_time()
        job = new_replay(sessions, readonly, ids, t0, until)
        new, new_cpu = time.perf_counter() - started, time.process_time() - cpu
        same = stored(sessions) == expected

        per = hosts * (intervals + 1)
        print(
            f"{label}: {hosts} hosts x {intervals} intervals ({judged} judged times; "
            f"history logged in {logged:.1f}s)\n"
            f"  old per-time re-judgement: {old:8.2f}s  {1000 * old / per:7.1f} ms/host/interval"
            f"  (this process's CPU {old_cpu:.2f}s)\n"
            f"  replay job:                {new:8.2f}s  {1000 * new / per:7.1f} ms/host/interval"
            f"  (this process's CPU {new_cpu:.2f}s; {job['state']}, {job['times']} times, "
            f"{job['findings']} new findings)\n"
            f"  ratio old/new: {old / new:.1f}x (CPU {old_cpu / new_cpu:.1f}x)   "
            "same findings, occurrences and sightings: "
            f"{'yes' if same else 'NO'} ({len(expected['findings'])} findings, "
            f"{len(expected['occurrences'])} occurrences, {len(expected['sightings'])} sightings)",
            flush=True,
        )
    finally:
        ro.dispose()
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    if args.backend in ("sqlite", "both"):
        tmp = tempfile.mkdtemp(prefix="fleetctl-replay-")
        try:
            run(f"sqlite:///{tmp}/fleet.db", "SQLite", args.hosts, args.intervals)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.backend in ("postgresql", "both"):
        name = f"fleetctl_bench_replay_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            run(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", "PostgreSQL", args.hosts, args.intervals)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
