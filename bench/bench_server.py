"""Server benchmarks, each printed beside a baseline measured in the same run.

1. Ingest: result rows/s through ``POST /api/v1/osquery/log`` (HTTPS, 1,024-line event
   batches, 5 columns) into SQLite and PostgreSQL, beside a raw bulk insert of the same
   rows into the same database (SQLite ``executemany`` in one transaction, PostgreSQL
   ``COPY``). Target: ratio >= 0.5.
2. Check-in: ``distributed/read`` requests/s with 10,000 enrolled hosts and nothing
   pending, beside a bare endpoint of the same server stack (``POST /healthz``, same TLS,
   same bodies). Load from ``wrk`` in its own process. Target: ratio >= 0.7 and
   >= 3,000 req/s on PostgreSQL with 2 cores.
3. Workers: the ingest and check-in figures of ``serve --workers 1`` and ``--workers 2``
   (``--workers``), measured one after the other in the same run, and their ratio. The
   load generators share the machine with the server: on 2 cores, the ratio says what a
   second worker buys when the clients take CPU too. Beside them, detection: hosts of
   ~400 processes post process-lineage snapshots (a few processes replaced each time),
   each post on a new connection so that posts of one host land on either worker; the
   figure is posts/s until every host is judged, with the full rebuilds detection did
   (a batch stored by the worker that does not judge its host must not rebuild it).

The server runs as ``fleetctl serve`` in its own process(es), as in production; sections
1 and 2 run one worker (``--workers 1``), so their figures compare across runs.

    .venv/bin/python bench/bench_server.py [--rows N] [--seconds S] [--backends sqlite,postgresql]
        [--only ingest|checkin|workers] [--workers 1,2] [--detect-hosts N] [--detect-posts N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

ROOT = Path(__file__).resolve().parents[1]
FLEETCTL = str(Path(sys.executable).with_name("fleetctl"))
PG_ADMIN = os.environ.get("FLEETCTL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
LINES = 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``fleetctl serve`` in a subprocess with its own home and database; ``extra`` are
    more ``serve`` options. Its stderr goes to ``server.log`` in the home (a pipe nobody
    reads would stall a long run once full)."""

    def __init__(self, db_url: str, extra: tuple[str, ...] = ()) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="fleetctl-bench-"))
        self.port = free_port()
        self.db_url = db_url
        self.url = f"https://127.0.0.1:{self.port}"
        env = {**os.environ, "FLEETCTL_HOME": str(self.home)}
        subprocess.run(
            [FLEETCTL, "db", "upgrade", "--db", db_url], env=env, check=True, capture_output=True
        )
        # Every simulated host connects from 127.0.0.1: lift the per-address limit.
        serve = ["serve", "--listen", f"127.0.0.1:{self.port}", "--db", db_url]
        self.log = self.home / "server.log"
        with self.log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [FLEETCTL, *serve, "--max-connections-per-address", "1000000", *extra],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                ctx = ssl.create_default_context(cafile=str(self.home / "tls" / "ca.pem"))
                httpx.get(f"{self.url}/healthz", verify=ctx, timeout=1)
                break
            except (httpx.HTTPError, FileNotFoundError, ssl.SSLError) as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    err = self.log.read_text(errors="replace")
                    raise RuntimeError(f"server did not start: {err}") from exc
                time.sleep(0.2)
        self.ssl = ssl.create_default_context(cafile=str(self.home / "tls" / "ca.pem"))
        self.secret = (self.home / "enroll_secret").read_text().strip()
        self.token = json.loads((self.home / "context.json").read_text())["token"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.home, ignore_errors=True)


def pg_database() -> str:
    name = f"fleetctl_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_pg(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_db(backend: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tempfile.mkdtemp(prefix='fleetctl-bench-db-')}/fleet.db"
    return pg_database()


def release_db(backend: str, url: str) -> None:
    if backend == "postgresql":
        drop_pg(url)
    else:
        shutil.rmtree(Path(url.removeprefix("sqlite:///")).parent, ignore_errors=True)


# --------------------------------------------------------------------------- ingest


def batch_lines(host: int, counter: int) -> list[dict[str, Any]]:
    t = 1_700_000_000 + counter
    return [
        {
            "name": "pack_bench_processes",
            "hostIdentifier": f"bench-{host}",
            "calendarTime": "Tue Nov 14 22:13:20 2023 UTC",
            "unixTime": t,
            "epoch": 0,
            "counter": counter,
            "numerics": False,
            "action": "added",
            "columns": {
                "pid": str(counter * LINES + i),
                "name": "bash",
                "path": "/usr/bin/bash",
                "cmdline": f"bash -c job-{host}-{counter}-{i}",
                "uid": str(1000 + i % 7),
            },
        }
        for i in range(LINES)
    ]


def enroll(client: httpx.Client, secret: str, host: int) -> str:
    body = {
        "enroll_secret": secret,
        "host_identifier": f"bench-{host}",
        "platform_type": "9",
        "host_details": {
            "system_info": {"uuid": f"bench-uuid-{host}", "hostname": f"bench-{host}"}
        },
    }
    return str(client.post("/api/v1/osquery/enroll", json=body).json()["node_key"])


def bench_ingest(
    backend: str, rows: int, workers: int = 1, senders: int | None = None, raw: bool = True
) -> dict[str, Any]:
    url = make_db(backend)
    server = Server(url, ("--workers", str(workers)))
    senders = senders or int(os.environ.get("BENCH_SENDERS", "2"))
    batches_per_sender = max(1, rows // LINES // senders)
    try:
        bodies: list[list[bytes]] = []
        clients = []
        for s in range(senders):
            client = httpx.Client(base_url=server.url, verify=server.ssl, timeout=120)
            clients.append(client)
            key = enroll(client, server.secret, s)
            bodies.append(
                [
                    orjson.dumps(
                        {"node_key": key, "log_type": "result", "data": batch_lines(s, c + 1)}
                    )
                    for c in range(batches_per_sender)
                ]
            )
        errors: list[str] = []

        def send(i: int) -> None:
            for body in bodies[i]:
                answer = (
                    clients[i]
                    .post(
                        "/api/v1/osquery/log",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    .json()
                )
                if answer != {"node_invalid": False}:
                    errors.append(str(answer))

        started = time.perf_counter()
        threads = [threading.Thread(target=send, args=(i,)) for i in range(senders)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise RuntimeError(errors[0])
        sent = senders * batches_per_sender * LINES
        raw_rate = raw_insert_rate(backend, url, sent) if raw else float("nan")
        return {
            "backend": backend,
            "rows": sent,
            "seconds": elapsed,
            "ingest_rows_s": sent / elapsed,
            "raw_rows_s": raw_rate,
            "ratio": (sent / elapsed) / raw_rate,
        }
    finally:
        for c in locals().get("clients", []):
            c.close()
        server.stop()
        release_db(backend, url)


def raw_insert_rate(backend: str, url: str, n: int) -> float:
    """The same shape of rows written straight into result_rows (no HTTP, no diffing)."""
    rows = []
    for i in range(n):
        cols = {
            "pid": str(i),
            "name": "bash",
            "path": "/usr/bin/bash",
            "cmdline": f"bash -c raw-{i}",
            "uid": str(1000 + i % 7),
        }
        text = json.dumps(cols)
        rows.append(
            (
                1,
                "pack_raw",
                hashlib.blake2b(text.encode(), digest_size=16).hexdigest(),
                text,
                1,
                1_700_000_000,
                None,
                1_700_000_000,
            )
        )
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        started = time.perf_counter()
        with conn:
            conn.executemany(
                "INSERT INTO result_rows (host_id, name, row_hash, columns, copies, first_seen,"
                " removed_at, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        elapsed = time.perf_counter() - started
        conn.close()
        return n / elapsed
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY result_rows (host_id, name, row_hash, columns, copies, first_seen,"
                " removed_at, seen_at) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return n / (time.perf_counter() - started)


# --------------------------------------------------------------------------- check-in

WRK_SCRIPT = """
local keys = {}
for line in io.lines("%(keys)s") do keys[#keys + 1] = line end
local i = 0
request = function()
  i = i + 1
  local body = '{"node_key":"' .. keys[(i %% #keys) + 1] .. '"}'
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json"}, body)
end
"""


def seed_hosts(url: str, n: int) -> list[str]:
    from sqlalchemy import insert

    from storage.engine import make_engine
    from storage.models import Host

    keys = [f"bench-node-key-{i:05d}-{uuid.uuid4().hex}" for i in range(n)]
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(Host),
            [
                {
                    "uuid": f"u-{i}",
                    "host_identifier": f"h-{i}",
                    "hostname": f"h-{i}",
                    "platform": "ubuntu",
                    "platform_type": "9",
                    "os_name": "",
                    "os_version": "",
                    "osquery_version": "5.23.0",
                    "node_key_hash": hashlib.sha256(k.encode()).hexdigest(),
                    "host_details": {},
                    "decorations": None,
                    "enrolled_at": 0,
                    "last_enrolled_at": 0,
                    "last_seen": 0,
                    "enroll_count": 1,
                }
                for i, k in enumerate(keys)
            ],
        )
    engine.dispose()
    return keys


def wrk(url: str, path: str, keys_file: Path, seconds: int) -> float:
    script = keys_file.with_suffix(f".{path.strip('/').replace('/', '_')}.lua")
    script.write_text(WRK_SCRIPT % {"keys": keys_file, "path": path})
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", "64", "-d", f"{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def bench_checkin(backend: str, hosts: int, seconds: int, workers: int = 1) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the check-in benchmark: apt-get install wrk")
    url = make_db(backend)
    from storage.engine import make_engine
    from storage.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    keys = seed_hosts(url, hosts)
    server = Server(url, ("--workers", str(workers)))
    keys_file = server.home / "keys.txt"
    keys_file.write_text("\n".join(keys) + "\n")
    try:
        wrk(server.url, "/api/v1/osquery/distributed/read", keys_file, 3)  # warm the key cache
        read = wrk(server.url, "/api/v1/osquery/distributed/read", keys_file, seconds)
        bare = wrk(server.url, "/healthz", keys_file, seconds)
        return {
            "backend": backend,
            "hosts": hosts,
            "read_req_s": read,
            "bare_req_s": bare,
            "ratio": read / bare,
        }
    finally:
        server.stop()
        release_db(backend, url)


# --------------------------------------------------------------------------- detection

LINEAGE = "pack_ipc-telemetry_process_lineage"
PROCESSES = 400  # a busy server's process table
REPLACED = 8  # processes that exit and are replaced between two collections


def lineage_row(pid: int, parent: int, cmdline: str) -> dict[str, str]:
    """A ``process_lineage`` row as osqueryd sends it (joined parent columns left empty)."""
    path = "/usr/bin/python3" if pid % 5 else "/usr/bin/bash"
    row = dict.fromkeys(
        ("parent_start_time", "parent_name", "parent_path", "parent_cmdline"), ""
    ) | dict.fromkeys(
        ("grandparent_pid", "grandparent_name", "grandparent_path", "grandparent_cmdline"), ""
    )
    return row | {
        "pid": str(pid),
        "parent": str(parent),
        "start_time": str(1000 + pid),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "cmdline": cmdline,
        "uid": "1000",
        "euid": "1000",
        "cwd": "/",
        "pgroup": str(pid),
        "cgroup_path": "/",
    }


def lineage_post(key: str, host: int, post: int) -> bytes:
    """Post ``post`` of host ``host``: ``PROCESSES`` under init, of which the first
    ``REPLACED * post`` have been replaced by new pids (``REPLACED`` more at each post,
    until all were)."""
    rows = [lineage_row(1, 0, "/sbin/init")]
    for i in range(PROCESSES - 1):
        replaced = i < REPLACED * post
        rows.append(lineage_row(100 + i + PROCESSES * replaced, 1, f"worker --job {i % 37}"))
    line = {
        "name": LINEAGE,
        "hostIdentifier": f"bench-{host}",
        "unixTime": 1_700_000_000 + post,
        "epoch": 0,
        "counter": post,
        "numerics": False,
        "action": "snapshot",
        "snapshot": rows,
    }
    return orjson.dumps({"node_key": key, "log_type": "result", "data": [line]})


def bench_detection(backend: str, workers: int, hosts: int, posts: int) -> dict[str, Any]:
    """Posts/s of ``hosts`` hosts' lineage snapshots (one sender per host, each post on
    a new connection) until detection judged them all, and how it judged them."""
    url = make_db(backend)
    server = Server(url, ("--workers", str(workers)))
    admin = httpx.Client(
        base_url=server.url,
        verify=server.ssl,
        timeout=60,
        headers={"Authorization": f"Bearer {server.token}"},
    )
    try:
        with httpx.Client(base_url=server.url, verify=server.ssl, timeout=60) as client:
            keys = [enroll(client, server.secret, h) for h in range(hosts)]
        errors: list[str] = []

        def send(host: int) -> None:
            for post in range(1, posts + 1):
                body = lineage_post(keys[host], host, post)
                with httpx.Client(base_url=server.url, verify=server.ssl, timeout=120) as one:
                    answer = one.post(
                        "/api/v1/osquery/log",
                        content=body,
                        headers={"Content-Type": "application/json"},
                    ).json()
                if answer != {"node_invalid": False}:
                    errors.append(str(answer))

        started = time.perf_counter()
        threads = [threading.Thread(target=send, args=(h,)) for h in range(hosts)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise RuntimeError(errors[0])
        status = caught_up(admin, hosts)
        elapsed = time.perf_counter() - started
        return {
            "posts_s": hosts * posts / elapsed,
            "full_rebuilds": status["full_rebuilds"],
            "incremental_runs": status["incremental_runs"],
            "rebuilds": status.get("rebuilds", {}),
        }
    finally:
        admin.close()
        server.stop()
        release_db(backend, url)


def caught_up(admin: httpx.Client, hosts: int, timeout: float = 600) -> dict[str, Any]:
    """Detection's fleet status once no host is pending (every worker reported since)."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = admin.get("/api/v1/admin/detection/status").json()
        if status["pending_hosts"] == 0 and status["hosts_judged"] >= hosts:
            time.sleep(1.5)  # each worker stores its counts every second
            return dict(admin.get("/api/v1/admin/detection/status").json())
        if time.monotonic() > deadline:
            raise RuntimeError(f"detection did not catch up: {status}")
        time.sleep(0.05)


def bench_workers(
    backend: str,
    counts: list[int],
    rows: int,
    hosts: int,
    seconds: int,
    detect: tuple[int, int] = (4, 12),
) -> None:
    """Ingest rows/s (4 senders), distributed/read req/s and detection's posts/s for
    each worker count, one after the other on fresh stores; each count's ratio to the
    first."""
    results = []
    for n in counts:
        ingest = bench_ingest(backend, rows, workers=n, senders=4, raw=False)
        checkin = bench_checkin(backend, hosts, seconds, workers=n)
        detection = bench_detection(backend, n, *detect)
        results.append((n, ingest["ingest_rows_s"], checkin["read_req_s"], detection))
    _, base_ingest, base_read, base_detect = results[0]
    for n, ingest_rate, read_rate, detection in results:
        reasons = ",".join(f"{k}={v}" for k, v in detection["rebuilds"].items())
        print(
            f"{backend:<11}{n:>8}{ingest_rate:>15,.0f}{ingest_rate / base_ingest:>8.2f}"
            f"{read_rate:>12,.0f}{read_rate / base_read:>8.2f}"
            f"{detection['posts_s']:>10,.1f}{detection['posts_s'] / base_detect['posts_s']:>8.2f}"
            f"{detection['full_rebuilds']:>6}{detection['incremental_runs']:>6}  {reasons}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=61_440)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--only", choices=["ingest", "checkin", "workers"], default=None)
    parser.add_argument("--workers", default="1,2", help="worker counts compared, first = 1x")
    parser.add_argument("--detect-hosts", type=int, default=4, help="workers: detection hosts")
    parser.add_argument("--detect-posts", type=int, default=12, help="workers: posts per host")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    print(f"cores: {os.cpu_count()}  python: {sys.version.split()[0]}")
    if args.only in (None, "ingest"):
        print("\ningest through POST /log (1,024-line batches, 5 columns) vs raw bulk insert")
        print(f"{'backend':<11}{'rows':>8}{'ingest rows/s':>15}{'raw rows/s':>13}{'ratio':>8}")
        for backend in backends:
            r = bench_ingest(backend, args.rows)
            print(
                f"{r['backend']:<11}{r['rows']:>8}{r['ingest_rows_s']:>15,.0f}"
                f"{r['raw_rows_s']:>13,.0f}{r['ratio']:>8.2f}"
            )
    if args.only in (None, "checkin"):
        print(
            f"\ncheck-in: distributed/read with {args.hosts:,} hosts vs bare POST /healthz"
            " (wrk -t2 -c64)"
        )
        print(f"{'backend':<11}{'read req/s':>12}{'bare req/s':>12}{'ratio':>8}")
        for backend in backends:
            r = bench_checkin(backend, args.hosts, args.seconds)
            print(
                f"{r['backend']:<11}{r['read_req_s']:>12,.0f}{r['bare_req_s']:>12,.0f}"
                f"{r['ratio']:>8.2f}"
            )
    if args.only in (None, "workers"):
        counts = [int(n) for n in args.workers.split(",") if n]
        print(
            f"\nserve --workers: POST /log rows/s (4 senders) and distributed/read req/s"
            f" ({args.hosts:,} hosts, wrk -t2 -c64), ratio to {counts[0]} worker(s); detection:"
            f" posts/s of {args.detect_hosts} hosts x {args.detect_posts} lineage snapshots"
            f" of {PROCESSES} processes until judged, full rebuilds and incremental runs"
        )
        head = f"{'backend':<11}{'workers':>8}{'log rows/s':>15}{'ratio':>8}"
        print(f"{head}{'read req/s':>12}{'ratio':>8}{'detect/s':>10}{'ratio':>8} full  incr")
        detect = (args.detect_hosts, args.detect_posts)
        for backend in backends:
            bench_workers(backend, counts, args.rows, args.hosts, args.seconds, detect)


if __name__ == "__main__":
    main()
