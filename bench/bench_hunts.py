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
import contextlib
import hashlib
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

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


async def poller(client: httpx.AsyncClient, key: str, interval: float, stop: asyncio.Event,
                 offset: float) -> None:
    await asyncio.sleep(offset)
    while not stop.is_set():
        read = (await client.post("/api/v1/osquery/distributed/read",
                                  json={"node_key": key})).json()
        queries = read.get("queries", {})
        if queries:
            await client.post("/api/v1/osquery/distributed/write", json={
                "node_key": key, "queries": {q: [{"one": "1"}] for q in queries},
                "statuses": dict.fromkeys(queries, 0), "messages": dict.fromkeys(queries, "")})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def fan_out(server: RunningServer, keys: list[str], interval: float,
                  limit: float = 60.0) -> tuple[dict[float, float], int]:
    """Seconds until 50 %, 99 % and 100 % of hosts answered (those reached before
    ``limit``), and how many answered."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.url, verify=ssl_context(server.ca),
                                 limits=limits, timeout=60) as client:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(poller(client, k, interval, stop, i * interval / len(keys)))
                 for i, k in enumerate(keys)]
        try:
            await asyncio.sleep(interval + 1)  # every host has checked in at least once
            admin = {"Authorization": f"Bearer {server.token}"}
            started = time.perf_counter()
            created = (await client.post("/api/v1/admin/queries", headers=admin,
                                         json={"sql": "SELECT 1 AS one", "timeout": 300})).json()
            reached: dict[float, float] = {}
            while True:
                status = (await client.get(f"/api/v1/admin/queries/{created['id']}",
                                           headers=admin)).json()
                elapsed = time.perf_counter() - started
                for share in (0.5, 0.99, 1.0):
                    if share not in reached and status["answered"] >= share * len(keys):
                        reached[share] = elapsed
                if status["answered"] >= len(keys) or elapsed > limit:
                    return reached, int(status["answered"])
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)


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
        reached, answered = asyncio.run(fan_out(server, keys, args.interval))
        shares = ", ".join(f"{int(k * 100)} % in {v:.2f} s ({v / args.interval:.2f} x interval)"
                           for k, v in sorted(reached.items()))
        print(f"live query to {args.hosts} hosts polling every {args.interval:g} s: "
              f"{answered} answered; {shares}")
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
