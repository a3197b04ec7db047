"""Live query fan-out and hunt dispatch, each beside its baseline in the same run.

1. Fan-out: 2,000 simulated hosts poll ``distributed/read`` every 5 s over HTTPS (one
   asyncio load generator speaking osquery's protocol, each host answering what it is
   given). Measured: seconds from ``POST /queries`` to every host's answer, beside the
   polling interval itself (ratio; 1.0 = one polling interval).
2. Hunt dispatch: seconds to fire one hunt run at 10,000 target hosts (campaign rows and
   the in-memory queue), beside a raw bulk insert of the same 10,000 target rows.

    .venv/bin/python bench/bench_hunts.py [--hosts 2000] [--interval 5]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleetctl.client import ssl_context  # noqa: E402
from storage.engine import make_engine  # noqa: E402
from tests.conftest import RunningServer  # noqa: E402


def seed_hosts(db: Path, n: int) -> list[str]:
    keys = [f"bench-hunt-key-{i:05d}" for i in range(n)]
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO hosts (uuid, host_identifier, hostname, platform, platform_type,"
            " os_name, os_version, osquery_version, node_key_hash, host_details, enrolled_at,"
            " last_enrolled_at, last_seen, enroll_count) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [(f"u-{i}", f"h-{i}", f"h-{i}", "ubuntu", "9", "", "", "5.23.0",
              hashlib.sha256(k.encode()).hexdigest(), "{}", 1, 1, int(time.time()), 1)
             for i, k in enumerate(keys)])
    conn.close()
    return keys


def simulate_hosts(url: str, ca: str, keys: list[str], interval: float, ready: Any,
                   stop: Any) -> None:
    """Child process: every key is one osqueryd polling ``distributed/read`` every
    ``interval`` seconds (evenly staggered) and answering each query it is given with one
    row, as osqueryd's distributed loop does. Runs in its own process, with aiohttp, so the
    load generator does not compete with the server for one interpreter."""
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
                        await post("/api/v1/osquery/distributed/write", {
                            "node_key": key, "queries": {q: [{"one": "1"}] for q in queries},
                            "statuses": dict.fromkeys(queries, 0),
                            "messages": dict.fromkeys(queries, "")})
                    await asyncio.sleep(interval)

            tasks = [asyncio.create_task(host(k, i * interval / len(keys)))
                     for i, k in enumerate(keys)]
            await asyncio.sleep(interval)
            ready.set()  # every host has checked in at least once
            while not stop.is_set():
                await asyncio.sleep(0.2)
            await asyncio.gather(*tasks)

    asyncio.run(run())


def fan_out(server: RunningServer, keys: list[str], interval: float,
            timeout: int = 120) -> tuple[float, str]:
    """Seconds from starting ``fleetctl query`` (a real process) to its exit, and its
    progress line, while the simulated hosts poll."""
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    hosts = ctx.Process(target=simulate_hosts,
                        args=(server.url, server.ca, keys, interval, ready, stop))
    hosts.start()
    try:
        if not ready.wait(interval + 60):
            raise SystemExit("the simulated hosts did not start")
        env = {**os.environ, "FLEETCTL_SERVER": server.url, "FLEETCTL_TOKEN": server.token,
               "FLEETCTL_CA": server.ca}
        started = time.perf_counter()
        done = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "fleetctl"), "query", "SELECT 1 AS one",
             "--targets", "all", "--timeout", f"{timeout}s", "--format", "ndjson"],
            env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"fleetctl query failed: {done.stderr}")
        rows = sum(1 for line in done.stdout.splitlines() if line.strip())
        conn = sqlite3.connect(server.settings.db_url.removeprefix("sqlite:///"))
        stored = conn.execute("SELECT max(t.done_at) - min(c.created_at) FROM campaign_targets t"
                              " JOIN campaigns c ON c.id = t.campaign_id").fetchone()[0]
        conn.close()
        return elapsed, (f"{done.stderr.strip().splitlines()[-1]}; {rows} rows printed; "
                         f"last answer stored {stored} s after the query was created")
    finally:
        stop.set()
        hosts.join(30)


def dispatch(server: RunningServer, n: int) -> tuple[float, float]:
    from sqlalchemy import select

    from storage.engine import make_sessionmaker, session_scope
    from storage.models import Hunt

    admin = server.admin()
    created = admin.post("/api/v1/admin/hunts", json={
        "name": "bench", "sql": "SELECT 1 AS one", "every": 3600, "targets": "all"})
    assert created.status_code == 200, created.text
    engine = make_engine(server.settings.db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        hid = session.scalars(select(Hunt.id).where(Hunt.name == "bench")).one()
    service = server.thread.state.hunts
    assert service is not None
    started = time.perf_counter()
    run = service.fire(hid, now=int(time.time()) + 7200)
    fired = time.perf_counter() - started
    assert run is not None
    conn = sqlite3.connect(server.settings.db_url.removeprefix("sqlite:///"))
    rows = [(999_999, h, "queued", "") for h in range(1, n + 1)]
    conn.execute("INSERT INTO campaigns (id, kind, name, sql, targets, created_at, expires_at)"
                 " VALUES (999999, 'hunt', 'raw', 'SELECT 1', 'all', 0, 0)")
    started = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO campaign_targets (campaign_id, host_id, state, message)"
                         " VALUES (?,?,?,?)", rows)
    raw = time.perf_counter() - started
    conn.close()
    engine.dispose()
    return fired, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--dispatch-hosts", type=int, default=10_000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="fleetctl-bench-hunt-"))
    server = RunningServer(home, f"sqlite:///{home / 'fleet.db'}")
    try:
        keys = seed_hosts(home / "fleet.db", args.hosts)
        server.thread.state.reload_node_keys()
        elapsed, progress = fan_out(server, keys, args.interval)
        print(f"live query to {args.hosts} hosts polling every {args.interval:g} s: "
              f"fleetctl query returned in {elapsed:.2f} s = {elapsed / args.interval:.2f} x "
              f"the polling interval ({progress})")
    finally:
        server.stop()

    home = Path(tempfile.mkdtemp(prefix="fleetctl-bench-hunt-"))
    server = RunningServer(home, f"sqlite:///{home / 'fleet.db'}")
    try:
        seed_hosts(home / "fleet.db", args.dispatch_hosts)
        fired, raw = dispatch(server, args.dispatch_hosts)
        print(f"hunt run to {args.dispatch_hosts} targets: {fired:.3f} s to fire vs "
              f"{raw:.3f} s raw insert of the target rows (ratio {fired / raw:.1f})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
