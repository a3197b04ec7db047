"""Detection benchmarks, each beside a baseline measured in the same run.

1. Throughput: process rows/s through snapshot building, path extraction and baseline
   lookup for a host of 500 processes (rows cloned from this machine's real pack output),
   beside a minimal pass over the same rows that only indexes pid -> row and parent ->
   children (ratio).
2. Per-batch cost at about 3% churn of a host of 500 processes (lineage, stdio, pipe
   and socket rows): the incremental state (``HostDetection``: changed rows in, changed
   paths judged) beside a full rebuild (snapshot of every row, every path, every key
   judged), on the same batches in the same run, with the rows/s each judges.
3. Memory and per-batch cost over a fleet: ``FLEET_HOSTS`` hosts of ``fleet_hosts.py``
   (about 300 processes each with their stdio, pipe and socket rows), each host's
   ``HostDetection`` built from its rows under tracemalloc (bytes per host and per
   process: what ``serve --detection-hosts`` costs), then one 60 s churn interval per
   host judged incrementally beside a full judgement of the same host.
4. Latency from the ``log`` POST to the stored finding, with 10 and then 1,000 hosts x
   500 processes of history in the store (SQLite), to show the cost follows the new
   rows, not the history. Target: under 1 s at 1,000 hosts.

    .venv/bin/python bench/bench_detection.py
"""

from __future__ import annotations

import copy
import json
import random
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fleetctl.cli.client import ssl_context  # noqa: E402
from fleetctl.detection import Baseline, DetectionState, Detector, HostSnapshot, build_paths  # noqa: E402
from fleetctl.detection.incremental import HostDetection  # noqa: E402
from fleetctl.engine import Engine, string_rows  # noqa: E402
from fleetctl.packs.loader import load_file, shipped_packs_dir  # noqa: E402
from storage.results import ChangedRow  # noqa: E402
from storage.runs import row_hash  # noqa: E402

QUERIES = ("process_lineage", "stdio_channels", "pipe_partners", "unix_sockets", "unix_listeners")
PROCS = 500
FLEET_HOSTS = 100
FLEET_QUERIES = (*QUERIES, "named_fifos")


def real_rows() -> dict[str, list[dict[str, str]]]:
    pack = load_file(shipped_packs_dir() / "ipc-telemetry.json")[0]
    engine = Engine()
    out = {}
    for name in QUERIES:
        result = engine.query(pack.query(name).query)
        out[name] = string_rows(result.rows)
    return out


def cloned(
    rows: dict[str, list[dict[str, str]]], procs: int, *, distinct: bool = False
) -> dict[str, list[dict[str, str]]]:
    """Copies of the real process tree with shifted pids until ``procs`` processes;
    ``distinct`` renames each copy's executables (``postgres`` -> ``postgres2``), so the
    copies are other programs with path keys of their own, as on a real host."""
    base = rows["process_lineage"]
    copies = max(1, -(-procs // max(1, len(base))))
    pid_cols = ("pid", "parent", "partner_pid", "grandparent_pid", "peer_pid")
    out: dict[str, list[dict[str, str]]] = {name: [] for name in rows}
    for c in range(copies):
        shift = c * 1_000_000

        def move(row: dict[str, str], shift: int = shift, c: int = c) -> dict[str, str]:
            new = dict(row)
            for col in pid_cols:
                value = new.get(col, "")
                if value.lstrip("-").isdigit() and int(value) > 1:
                    new[col] = str(int(value) + shift)
            if distinct and c:
                for col in ("name", "path", "process_path", "partner_name", "partner_path"):
                    if new.get(col):
                        new[col] = f"{new[col]}{c + 1}"
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


CHURN = 0.03
BATCHES = 20


def churned(
    rows: dict[str, list[dict[str, str]]], rng: random.Random, fraction: float, clock: int
) -> dict[str, list[dict[str, str]]]:
    """The next interval of a host: ``fraction`` of its processes exit and as many start
    (copies of a running one under a new pid and start time, fed by the same channels),
    and as many again are restarted under the same pid (pid reuse, new start time)."""
    out = {name: list(items) for name, items in rows.items()}
    lineage = out["process_lineage"]
    count = max(1, int(len(lineage) * fraction / 2))
    gone = {r["pid"] for r in rng.sample(lineage, count)}
    reused = {r["pid"] for r in rng.sample(lineage, count)} - gone
    for name, items in out.items():
        kept = [r for r in items if r["pid"] not in gone and r.get("partner_pid") not in gone]
        out[name] = [
            dict(r, start_time=str(clock)) if r["pid"] in reused and "start_time" in r else r
            for r in kept
        ]
    for template in rng.sample(out["process_lineage"], count):
        pid = str(rng.randrange(5_000_000, 9_000_000))
        for name, items in list(out.items()):
            out[name] = items + [
                dict(r, pid=pid, start_time=str(clock)) if "start_time" in r else dict(r, pid=pid)
                for r in items
                if r["pid"] == template["pid"]
            ]
    return out


def changes(
    old: dict[str, list[dict[str, str]]], new: dict[str, list[dict[str, str]]], at: int
) -> list[tuple[str, list[ChangedRow], list[ChangedRow]]]:
    """Per query, the rows that opened and closed (what the store reports per run)."""
    out = []
    for name in new:
        before = {row_hash(r): r for r in old.get(name, [])}
        after = {row_hash(r): r for r in new[name]}
        opened = [ChangedRow(h, r, at) for h, r in after.items() if h not in before]
        closed = [ChangedRow(h, r, None) for h, r in before.items() if h not in after]
        out.append((name, opened, closed))
    return out


def judge_batch(host: HostDetection, detector: Detector, at: int) -> int:
    """What the server's detection does with a batch already applied to ``host``: update,
    judge the changed keys (their unchanged paths passed as such), note them judged.
    How many paths the detector was given."""
    update = host.update(at)
    paths = host.group(update.keys, at)
    detector.detect(paths, at, unchanged=host.unchanged(paths, update))
    host.judged(update.keys, at)
    return len(paths)


def incremental_vs_full(rows: dict[str, list[dict[str, str]]]) -> dict[str, float]:
    """Per-batch detection cost at ``CHURN`` of the host, both ways on the same batches."""
    rng = random.Random(15)
    clock = int(time.time())
    host = HostDetection("h")
    for name, opened, _ in changes({}, rows, clock):
        host.change(f"pack_ipc-telemetry_{name}", name, opened, [])
    state, baseline = DetectionState(), Baseline.default()  # the server keeps it loaded
    Detector(baseline, state).learn(build_paths(HostSnapshot.from_results("h", rows)), clock)
    full_state = copy.deepcopy(state)
    host.judged(host.full_rebuild(clock).keys, clock)
    inc_seconds = full_seconds = 0.0
    changed_rows = judged_paths = 0
    for _ in range(BATCHES):
        clock += 60
        new = churned(rows, rng, CHURN, clock)
        batch = changes(rows, new, clock)
        rows = new
        changed_rows += sum(len(o) + len(c) for _, o, c in batch)
        started = time.perf_counter()
        for name, opened, closed in batch:
            host.change(f"pack_ipc-telemetry_{name}", name, opened, closed)
        judged_paths += judge_batch(host, Detector(baseline, state), clock)
        inc_seconds += time.perf_counter() - started
        started = time.perf_counter()
        everything = build_paths(HostSnapshot.from_results("h", rows, observed_at=clock))
        Detector(baseline, full_state).detect(everything, clock)
        full_seconds += time.perf_counter() - started
    total = sum(len(v) for v in rows.values())
    tracemalloc.start()
    kept = HostDetection("h")
    for name, opened, _ in changes({}, rows, clock):
        kept.change(f"pack_ipc-telemetry_{name}", name, opened, [])
    kept.full_rebuild(clock)
    memory = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "rows": total,
        "changed_rows": changed_rows / BATCHES,
        "judged_paths": judged_paths / BATCHES,
        "paths": len(host.paths),
        "incremental_ms": 1000 * inc_seconds / BATCHES,
        "full_ms": 1000 * full_seconds / BATCHES,
        "memory_mb": memory / 1e6,
    }


def fleet_rows(host: Any) -> dict[str, list[dict[str, str]]]:
    """A simulated host's rows as the store gives them (every value a string)."""
    return {
        q: [
            {k: "" if v is None else str(v) for k, v in json.loads(line).items()}
            for line in host.rows(q)
        ]
        for q in FLEET_QUERIES
    }


def fleet_state(hosts: int = FLEET_HOSTS) -> dict[str, float]:
    """Bytes of detection state per host over ``hosts`` simulated hosts, and one churn
    interval per host judged incrementally and in full (mean ms per batch)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from fleet_hosts import Host

    clock = int(time.time())
    baseline = Baseline.default()
    fleet = [Host(i, 15, clock) for i in range(hosts)]
    for h in fleet:
        fleet_rows(h)  # the simulator's own row cache is not detection state
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = []
    for h in fleet:  # rows parsed here: what the state keeps of them is counted
        state = HostDetection(h.identifier)
        for name, opened, _ in changes({}, fleet_rows(h), clock):
            state.change(f"pack_ipc-telemetry_{name}", name, opened, [])
        state.judged(state.full_rebuild(clock).keys, clock)
        kept.append(state)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    procs = sum(len(k.raw.processes) for k in kept)
    inc_seconds = full_seconds = 0.0
    changed_rows = 0
    for h, state in zip(fleet, kept, strict=True):
        old = fleet_rows(h)
        h.churn(clock + 60)
        new = fleet_rows(h)
        batch = changes(old, new, clock + 60)
        changed_rows += sum(len(o) + len(c) for _, o, c in batch)
        detection = DetectionState()
        Detector(baseline, detection).learn(
            build_paths(HostSnapshot.from_results(h.identifier, old)), clock
        )
        full_state = copy.deepcopy(detection)
        started = time.perf_counter()
        for name, opened, closed in batch:
            state.change(f"pack_ipc-telemetry_{name}", name, opened, closed)
        judge_batch(state, Detector(baseline, detection), clock + 60)
        inc_seconds += time.perf_counter() - started
        started = time.perf_counter()
        paths = build_paths(HostSnapshot.from_results(h.identifier, new, observed_at=clock + 60))
        Detector(baseline, full_state).detect(paths, clock + 60)
        full_seconds += time.perf_counter() - started
    return {
        "hosts": hosts,
        "bytes_per_host": held / hosts,
        "bytes_per_process": held / procs,
        "procs_per_host": procs / hosts,
        "rows_per_host": sum(k.row_count() for k in kept) / hosts,
        "changed_rows": changed_rows / hosts,
        "incremental_ms": 1000 * inc_seconds / hosts,
        "full_ms": 1000 * full_seconds / hosts,
    }


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
    cost = incremental_vs_full(cloned(real_rows(), PROCS, distinct=True))
    inc, full = cost["incremental_ms"], cost["full_ms"]
    print(
        f"per batch at {CHURN:.0%} churn ({cost['changed_rows']:.0f} of {cost['rows']:,.0f} rows"
        f" changed, {cost['judged_paths']:.0f} of {cost['paths']:.0f} paths judged, mean of"
        f" {BATCHES}): incremental {inc:.1f} ms vs full rebuild {full:.1f} ms"
        f" ({full / inc:.1f}x); host rows kept judged: {cost['rows'] / inc * 1000:,.0f} rows/s"
        f" incremental vs {cost['rows'] / full * 1000:,.0f} rows/s full;"
        f" state in memory {cost['memory_mb']:.1f} MB per host"
    )
    fleet = fleet_state()
    per_host, per_proc = fleet["bytes_per_host"], fleet["bytes_per_process"]
    print(
        f"fleet of {fleet['hosts']:.0f} simulated hosts ({fleet['procs_per_host']:.0f} processes,"
        f" {fleet['rows_per_host']:,.0f} rows each): detection state {per_host / 1e6:.2f} MB per"
        f" host ({per_proc / 1e3:.1f} KB per process, {per_proc * 400 / 1e6:.2f} MB at 400"
        f" processes; 10,000 hosts of 400: {per_proc * 400 * 10_000 / 1e9:.0f} GB); one 60 s"
        f" interval ({fleet['changed_rows']:.0f} rows changed per host): incremental"
        f" {fleet['incremental_ms']:.1f} ms vs full {fleet['full_ms']:.1f} ms per batch"
        f" ({fleet['full_ms'] / fleet['incremental_ms']:.1f}x)"
    )
    small = latency(10, rows)
    big = latency(1000, rows)
    print(
        f"latency log POST -> stored finding: {small:.2f} s with 10 hosts of history, "
        f"{big:.2f} s with 1,000 hosts x {PROCS} processes (ratio {big / small:.2f})"
    )


if __name__ == "__main__":
    main()
