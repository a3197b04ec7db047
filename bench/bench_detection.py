"""Detection benchmarks, each beside a baseline measured in the same run.

1. Throughput: process rows/s through snapshot building, path extraction and baseline
   lookup for a host of 500 processes (rows cloned from this machine's real pack output),
   beside a minimal pass over the same rows that only indexes pid -> row and parent ->
   children (ratio).
2. Latency from the ``log`` POST to the stored finding, with 10 and then 1,000 hosts x
   500 processes of history in the store (SQLite), to show the cost follows the new
   rows, not the history. Target: under 1 s at 1,000 hosts.

    .venv/bin/python bench/bench_detection.py
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleetctl.cli.client import ssl_context  # noqa: E402
from fleetctl.detection import Baseline, DetectionState, Detector, HostSnapshot, build_paths  # noqa: E402
from fleetctl.engine import Engine, string_rows  # noqa: E402
from fleetctl.packs.loader import load_file, shipped_packs_dir  # noqa: E402

QUERIES = ("process_lineage", "stdio_channels", "pipe_partners", "unix_sockets", "unix_listeners")
PROCS = 500


def real_rows() -> dict[str, list[dict[str, str]]]:
    pack = load_file(shipped_packs_dir() / "ipc-telemetry.json")[0]
    engine = Engine()
    out = {}
    for name in QUERIES:
        result = engine.query(pack.query(name).query)
        out[name] = string_rows(result.rows)
    return out


def cloned(rows: dict[str, list[dict[str, str]]], procs: int) -> dict[str, list[dict[str, str]]]:
    """Copies of the real process tree with shifted pids until ``procs`` processes."""
    base = rows["process_lineage"]
    copies = max(1, -(-procs // max(1, len(base))))
    pid_cols = ("pid", "parent", "partner_pid", "grandparent_pid", "peer_pid")
    out: dict[str, list[dict[str, str]]] = {name: [] for name in rows}
    for c in range(copies):
        shift = c * 1_000_000

        def move(row: dict[str, str], shift: int = shift) -> dict[str, str]:
            new = dict(row)
            for col in pid_cols:
                value = new.get(col, "")
                if value.lstrip("-").isdigit() and int(value) > 1:
                    new[col] = str(int(value) + shift)
            return new

        for name, items in rows.items():
            out[name].extend(move(r) for r in items)
    out["process_lineage"] = out["process_lineage"][:procs]
    return out


def throughput(rows: dict[str, list[dict[str, str]]], rounds: int = 20) -> tuple[float, float]:
    total = sum(len(v) for v in rows.values())
    state = DetectionState()
    detector = Detector(Baseline.default(), state)
    detector.learn(build_paths(HostSnapshot.from_results("h", rows)), time.time())
    started = time.perf_counter()
    for _ in range(rounds):
        paths = build_paths(HostSnapshot.from_results("h", rows))
        detector.detect(paths, time.time())
    ours = total * rounds / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(rounds):
        by_pid: dict[int, dict[str, str]] = {}
        children: dict[int, list[int]] = {}
        for items in rows.values():
            for row in items:
                pid = int(row["pid"])
                by_pid[pid] = row
                children.setdefault(int(row.get("parent") or 0), []).append(pid)
    raw = total * rounds / (time.perf_counter() - started)
    return ours, raw


def seed_history(db: Path, hosts: int, procs: int) -> None:
    """``hosts`` enrolled hosts, each with ``procs`` closed lineage rows and path keys."""
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO hosts (uuid, host_identifier, hostname, platform, platform_type, os_name,"
            " os_version, osquery_version, node_key_hash, host_details, enrolled_at,"
            " last_enrolled_at, last_seen, enroll_count) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    f"hist-{i}",
                    f"hist-{i}",
                    f"hist-{i}",
                    "ubuntu",
                    "9",
                    "",
                    "",
                    "5.23.0",
                    f"{i:064d}",
                    "{}",
                    1,
                    1,
                    1,
                    1,
                )
                for i in range(hosts)
            ],
        )
        ids = [r[0] for r in conn.execute("SELECT id FROM hosts WHERE uuid LIKE 'hist-%'")]
        rows = []
        sightings = []
        for hid in ids:
            for p in range(procs):
                cols = json.dumps(
                    {
                        "pid": str(p + 2),
                        "parent": "1",
                        "name": f"svc{p % 40}",
                        "path": f"/usr/sbin/svc{p % 40}",
                        "cmdline": f"svc{p}",
                    }
                )
                rows.append(
                    (
                        hid,
                        "pack_ipc-telemetry_process_lineage",
                        f"{hid:016x}{p:016x}",
                        cols,
                        1,
                        1000,
                        2000,
                        1000,
                    )
                )
            sightings.extend(
                (hid, f"svc{k}|0|systemd|?|null+null+null", 1000, 2000) for k in range(40)
            )
        conn.executemany(
            "INSERT INTO result_rows (host_id, name, row_hash, columns, copies, first_seen,"
            " removed_at, seen_at) VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO path_sightings (host_id, path_key, first_seen, last_seen)"
            " VALUES (?,?,?,?)",
            sightings,
        )
    conn.close()


def latency(history_hosts: int, rows: dict[str, list[dict[str, str]]]) -> float:
    from tests.conftest import RunningServer
    from tests.osquery_node import OsqueryNode

    home = Path(tempfile.mkdtemp(prefix="fleetctl-bench-det-"))
    db = home / "fleet.db"
    server = RunningServer(home, f"sqlite:///{db}")
    seed_history(db, history_hosts, PROCS)
    try:
        node = OsqueryNode(server.url, server.ca, server.secret, "target", "u-target")
        node.enroll()
        admin = httpx.Client(
            base_url=server.url,
            verify=ssl_context(server.ca),
            headers={"Authorization": f"Bearer {server.token}"},
        )
        admin.post(
            "/api/v1/admin/packs/apply",
            json={
                "packs": [
                    {
                        "name": "ipc-telemetry",
                        "pack": load_file(shipped_packs_dir() / "ipc-telemetry.json")[
                            0
                        ].to_osquery(),
                    }
                ]
            },
        )

        def snapshot(name: str, items: list[dict[str, str]], t: int) -> dict[str, Any]:
            return {
                "name": f"pack_ipc-telemetry_{name}",
                "hostIdentifier": "target",
                "unixTime": t,
                "epoch": 0,
                "counter": 0,
                "numerics": False,
                "action": "snapshot",
                "snapshot": items,
            }

        t0 = int(time.time()) - 10
        node.log("result", [snapshot(n, r, t0) for n, r in rows.items()])
        time.sleep(1.0)
        admin.post("/api/v1/admin/detect", json={"host": "target", "learn": True})
        # A new shell fed by a FIFO under /dev/shm appears under an existing service.
        parent = rows["process_lineage"][0]
        evil = dict(
            parent,
            pid="999999",
            parent=parent["pid"],
            name="sh",
            path="/usr/bin/dash",
            cmdline="sh",
            parent_name=parent["name"],
            parent_path=parent["path"],
        )
        lineage = [*rows["process_lineage"], evil]
        stdio = [
            *rows["stdio_channels"],
            {
                "pid": "999999",
                "start_time": evil.get("start_time", ""),
                "name": "sh",
                "path": "/usr/bin/dash",
                "parent": parent["pid"],
                "fd": "0",
                "kind": "fifo",
                "target": "",
                "inode": "4242",
                "mode": "rw",
                "partner_pid": "",
                "partner_fd": "",
                "partner_name": "",
                "partner_path": "",
            },
        ]
        t1 = t0 + 5
        started = time.perf_counter()
        node.log(
            "result",
            [snapshot("process_lineage", lineage, t1), snapshot("stdio_channels", stdio, t1)],
        )
        while True:
            found = admin.get("/api/v1/admin/findings", params={"host": "target"}).json()
            if any(f["pid"] == 999999 for f in found["findings"]):
                break
            if time.perf_counter() - started > 30:
                raise RuntimeError("no finding within 30 s")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        admin.close()
        node.close()
        return elapsed
    finally:
        server.stop()


def main() -> None:
    rows = cloned(real_rows(), PROCS)
    count = sum(len(v) for v in rows.values())
    print(f"host of {len(rows['process_lineage'])} processes, {count} rows per collection")
    ours, raw = throughput(rows)
    print(
        f"throughput: {ours:,.0f} rows/s through snapshot+paths+baseline vs "
        f"{raw:,.0f} rows/s minimal index build (ratio {ours / raw:.2f})"
    )
    small = latency(10, rows)
    big = latency(1000, rows)
    print(
        f"latency log POST -> stored finding: {small:.2f} s with 10 hosts of history, "
        f"{big:.2f} s with 1,000 hosts x {PROCS} processes (ratio {big / small:.2f})"
    )


if __name__ == "__main__":
    main()
