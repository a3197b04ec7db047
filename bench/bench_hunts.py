"""Live query fan-out and hunt dispatch, each beside its baseline in the same run.

1. Fan-out: 2,000 simulated hosts poll ``distributed/read`` every 5 s over HTTPS and
   answer what they are given, as osqueryd's distributed loop does (a load generator in
   its own process, with aiohttp). The server is ``fleetctl serve`` in its own process.
   Measured: seconds from starting ``fleetctl query`` (a real process) until it exits
   with every answer, beside the polling interval itself (ratio; the floor is about 1.0,
   since the last host to poll sees the query one interval after it was created).
2. Hunt dispatch: seconds for ``HuntService.fire`` to start one run at 10,000 target
   hosts (target resolution, campaign rows, the in-memory queue), beside a raw bulk
   insert of the same 10,000 target rows (``executemany`` on SQLite, ``COPY`` on
   PostgreSQL).

    .venv/bin/python bench/bench_hunts.py [--hosts 2000] [--interval 5]
        [--dispatch-hosts 10000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_server import FLEETCTL, Server, make_db, release_db, seed_hosts  # noqa: E402
from sqlalchemy import text  # noqa: E402

from fleetctl.cli.client import ssl_context  # noqa: E402
from storage.engine import make_engine  # noqa: E402


def simulate_hosts(
    url: str, ca: str, keys: list[str], interval: float, ready: Any, stop: Any
) -> None:
    """Child process: every key is one osqueryd polling ``distributed/read`` every
    ``interval`` seconds (evenly staggered) and answering each query with one row."""
    import aiohttp

    async def run() -> None:
        connector = aiohttp.TCPConnector(limit=0, ssl=ssl_context(ca))
        async with aiohttp.ClientSession(base_url=url, connector=connector) as session:

            async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
                async with session.post(path, json=body) as response:
                    return dict(await response.json())

            async def host(key: str, offset: float) -> None:
                await asyncio.sleep(offset)
                while not stop.is_set():
                    read = await post("/api/v1/osquery/distributed/read", {"node_key": key})
                    queries = read.get("queries", {})
                    if queries:
                        await post(
                            "/api/v1/osquery/distributed/write",
                            {
                                "node_key": key,
                                "queries": {q: [{"one": "1"}] for q in queries},
                                "statuses": dict.fromkeys(queries, 0),
                                "messages": dict.fromkeys(queries, ""),
                            },
                        )
                    await asyncio.sleep(interval)

            tasks = [
                asyncio.create_task(host(k, i * interval / len(keys))) for i, k in enumerate(keys)
            ]
            await asyncio.sleep(interval + 2)
            ready.set()  # every host has checked in, and the check-ins are written
            while not stop.is_set():
                await asyncio.sleep(0.2)
            await asyncio.gather(*tasks)

    asyncio.run(run())


def fan_out(backend: str, hosts: int, interval: float) -> str:
    url = make_db(backend)
    server = None
    try:
        server = Server(url)
        keys = seed_hosts(url, hosts)
        ca = str(server.home / "tls" / "ca.pem")
        ctx = multiprocessing.get_context("spawn")
        ready, stop = ctx.Event(), ctx.Event()
        load = ctx.Process(
            target=simulate_hosts, args=(server.url, ca, keys, interval, ready, stop)
        )
        load.start()
        try:
            if not ready.wait(interval + 60):
                raise SystemExit("the simulated hosts did not start")
            started = time.perf_counter()
            done = subprocess.run(
                [
                    FLEETCTL,
                    "query",
                    "SELECT 1 AS one",
                    "--targets",
                    "all",
                    "--timeout",
                    "120s",
                    "--format",
                    "ndjson",
                ],
                env={**os.environ, "FLEETCTL_HOME": str(server.home)},
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.perf_counter() - started
        finally:
            stop.set()
            load.join(30)
        if done.returncode != 0:
            raise SystemExit(f"fleetctl query failed: {done.stderr}")
        printed = sum(1 for line in done.stdout.splitlines() if line.strip())
        engine = make_engine(url)
        with engine.connect() as conn:
            stored = conn.execute(
                text(
                    "SELECT max(t.done_at) - min(c.created_at) FROM campaign_targets t"
                    " JOIN campaigns c ON c.id = t.campaign_id"
                )
            ).scalar()
        engine.dispose()
        return (
            f"{backend:<11}{elapsed:>9.2f} s{elapsed / interval:>8.2f}   "
            f"{done.stderr.strip().splitlines()[-1]}; {printed} rows printed; last answer "
            f"stored {stored} s after the query was created"
        )
    finally:
        if server is not None:
            server.stop()
        release_db(backend, url)


def dispatch(backend: str, n: int) -> str:
    from fleetctl.server.campaign_queue import CampaignQueue
    from fleetctl.server.hunts import HuntService
    from storage.engine import make_sessionmaker, session_scope
    from storage.migrate import upgrade
    from storage.models import Hunt

    url = make_db(backend)
    try:
        engine = make_engine(url)
        upgrade(engine)
        seed_hosts(url, n)
        sessions = make_sessionmaker(engine)
        with session_scope(sessions) as session:
            hunt = Hunt(
                name="bench",
                sql="SELECT 1 AS one",
                targets="all",
                schedule_kind="every",
                schedule="3600",
                expires=3600,
                state="active",
                created_at=0,
            )
            session.add(hunt)
            session.flush()
            hunt_id = hunt.id
        queue = CampaignQueue()
        service = HuntService(engine, sessions, queue, Path(tempfile.gettempdir()))  # not started
        started = time.perf_counter()
        run = service.fire(hunt_id)
        fired = time.perf_counter() - started
        assert run == 1 and len(queue) == n
        raw = raw_insert(engine, n)
        engine.dispose()
        return f"{backend:<11}{n:>8}{fired:>10.3f} s{raw:>10.3f} s{fired / raw:>8.1f}"
    finally:
        release_db(backend, url)


def raw_insert(engine: Any, n: int) -> float:
    """Seconds to insert ``n`` target rows with the driver's fastest bulk path."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaigns (id, kind, name, sql, targets, created_at,"
                " expires_at) VALUES (999999, 'hunt', 'raw', 'SELECT 1', 'all', 0, 0)"
            )
        )
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        rows = [(999_999, h, "queued", "") for h in range(1, n + 1)]
        started = time.perf_counter()
        if engine.dialect.name == "postgresql":
            with cursor.copy(
                "COPY campaign_targets (campaign_id, host_id, state, message) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.execute("BEGIN")  # the store's connections start in autocommit
            cursor.executemany(
                "INSERT INTO campaign_targets (campaign_id, host_id, state,"
                " message) VALUES (?,?,?,?)",
                rows,
            )
        raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--dispatch-hosts", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    print(f"cores: {os.cpu_count()}  python: {sys.version.split()[0]}")

    print(
        f"\nlive query: `fleetctl query` to {args.hosts:,} hosts polling every "
        f"{args.interval:g} s, until it exits with every answer"
    )
    print(f"{'backend':<11}{'returned':>11}{'ratio':>8}   (ratio = seconds / polling interval)")
    for backend in backends:
        print(fan_out(backend, args.hosts, args.interval), flush=True)

    print(
        f"\nhunt dispatch: one run to {args.dispatch_hosts:,} targets vs raw bulk insert of the"
        " target rows"
    )
    print(f"{'backend':<11}{'targets':>8}{'fire':>12}{'raw':>12}{'ratio':>8}")
    for backend in backends:
        print(dispatch(backend, args.dispatch_hosts), flush=True)


if __name__ == "__main__":
    main()
