"""The web console at scale, in a real Chromium: the findings page over 10,000 findings,
a finding's trace on a host of 2,000 processes, and the trace of a process with hundreds
of children drawn as one large graph, each beside the admin API call it makes, timed in
the same run.

The store (SQLite in a temporary folder, or ``--db URL``) gets one simulated Linux host
of ``fleet_hosts.py`` grown to ``--processes`` processes, with a FIFO-fed shell (its
canary) among them, its pack results applied as the server stores them; and
``--findings`` findings spread over ``--hosts`` enrolled hosts, stored through the
store's own ``save_findings``. A real server (TLS on loopback) serves it; Chromium signs
in and opens

* ``#/findings``: time to interactive is from navigation until the page shows its first
  page of findings (200 rows, which the API pages: ``limit`` and ``offset``);
* ``#/findings/<id>`` of the canary's finding: until its lineage graph is drawn;
* on that page, the trace of the host's largest worker pool's master (its pid typed in,
  then Show): from the click until its graph, hundreds of nodes, is drawn;

each ``--repeat`` times (median shown), beside the page's ``GET /api/v1/admin/findings``
(and the same for the last page) and ``GET /api/v1/admin/trace`` of each process alone
over the same connection type (httpx, TLS).

    .venv/bin/python bench/bench_console.py [--findings 10000] [--processes 2000]
        [--hosts 50] [--repeat 3] [--db URL] [--chromium /usr/bin/chromium]

Timings on a shared machine are noisy: other work on it shows in them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_history import PACKS, QUERIES
from browser_flags import CHROMIUM_ARGS
from fleet_hosts import Host, QueryState, run_lines

from fleetctl.cli.client import ssl_context
from fleetctl.ingest import parse_result_lines
from fleetctl.server.bootstrap import prepare
from fleetctl.server.runner import ServerThread, bind
from fleetctl.settings import Settings
from storage import findings as findings_store
from storage import hosts as host_store
from storage import results as result_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.migrate import upgrade

SEVERITIES = ("low", "medium", "high", "critical")
PAGE = 200  # findings a page of the console shows (``pages/findings.js``)


@dataclass(frozen=True)
class Occurrence:
    pid: int
    start_time: int | None
    severity: str
    score: int
    seen_during_learning: bool = False


@dataclass(frozen=True)
class Finding:
    """A finding as the detector hands it to the store (``storage.findings.Finding``)."""

    id: str
    key: str
    pid: int
    parent: str
    child: str
    severity: str
    score: int
    first_seen: float
    last_seen: float
    new_on_host: bool = True
    new_on_fleet: bool = False
    seen_during_learning: bool = False
    occurrences: tuple[Occurrence, ...] = field(default=())

    def occurrence_document(self, occurrence: Any, /) -> dict[str, Any]:
        return {
            "reasons": [{"code": "relay_fifo", "text": f"stdin is a FIFO ({self.key})"}],
            "lineage": [{"pid": occurrence.pid, "path": f"/usr/bin/{self.child}"}],
            "prevalence": {"hosts_with_key": 1, "hosts_total": 1},
        }


def grown_host(processes: int, now: int) -> Host:
    """A simulated host grown with its own worker pools to ``processes`` processes, and
    its FIFO-fed shell."""
    host = Host(0, 15, now)
    while len(host.procs) < processes:
        for spawn in host.pools.values():
            spawn(now, False)
            if len(host.procs) >= processes:
                break
    host.add_canary(now)
    return host


def store_host(sessions: Any, host: Host, now: int) -> int:
    with session_scope(sessions) as session:
        row, *_ = host_store.enroll_host(
            session,
            host_identifier=host.identifier,
            platform_type="9",
            host_details={"system_info": {"uuid": host.uuid}},
            node_key_hash=uuid.uuid4().hex * 2,
            now=now,
        )
        host_id = int(row.id)
    lines: list[Any] = []
    for name, (query, snapshot) in QUERIES.items():
        data, _ = run_lines(host, name, query, "", snapshot, True, QueryState(), now)
        lines.extend(orjson.loads(d) for d in data)
    with session_scope(sessions) as session:
        result_store.apply_runs(session, host_id, parse_result_lines(lines, PACKS).runs, now, PACKS)
    return host_id


def store_findings(sessions: Any, count: int, hosts: int, canary: tuple[int, int], now: int) -> str:
    """``count`` findings over ``hosts`` hosts (the first is the canary's host, whose
    finding names the canary's pid); the canary finding's id."""
    host_ids = [canary[0]]
    with session_scope(sessions) as session:
        for i in range(1, hosts):
            row, *_ = host_store.enroll_host(
                session,
                host_identifier=f"bench-{i:04d}",
                platform_type="9",
                host_details={"system_info": {"uuid": f"bench-{i}"}},
                node_key_hash=uuid.uuid4().hex * 2,
                now=now,
            )
            host_ids.append(int(row.id))
    by_host: dict[int, list[Finding]] = {}
    for i in range(count):
        pid = canary[1] if i == 0 else 10_000 + i
        severity = SEVERITIES[i % len(SEVERITIES)]
        finding = Finding(
            id=f"{i:020x}",
            key=f"sshd>bash>sh<fifo:/tmp/.f{i}",
            pid=pid,
            parent="bash",
            child="sh",
            severity=severity,
            score=40 + 10 * SEVERITIES.index(severity),
            first_seen=now - i,
            last_seen=now - i,
            occurrences=(Occurrence(pid, None, severity, 50),),
        )
        by_host.setdefault(host_ids[i % len(host_ids)], []).append(finding)
    for host_id, found in by_host.items():
        with session_scope(sessions) as session:
            findings_store.save_findings(session, host_id, found, lambda a, b: a == b)
    return f"{0:020x}"


@contextmanager
def server(db_url: str, home: Path) -> Iterator[tuple[str, str, str]]:
    sock = bind("127.0.0.1", 0)
    settings = Settings(home=home, listen=f"127.0.0.1:{sock.getsockname()[1]}", db=db_url)
    prepared = prepare(settings)
    thread = ServerThread(settings, prepared, sock)
    thread.start()
    token = json.loads((home / "context.json").read_text())["token"]
    try:
        yield prepared.server_url, str(prepared.tls.ca), token
    finally:
        thread.stop()


def timed(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def largest_pool(host: Host) -> int:
    """The pid of the process with the most children, short of pid 1 (whose trace is the
    whole host): a worker pool's master, its trace a graph of hundreds of nodes."""
    masters = [pid for pid in host.procs if pid != 1]
    return max(masters, key=lambda pid: len(host.children.get(pid, ())))


def measure(
    url: str,
    ca: str,
    token: str,
    args: argparse.Namespace,
    finding: str,
    traced: tuple[int, int],
    host: str,
) -> dict[str, float]:
    """Timings by name (seconds), and the nodes each graph drew. ``traced``: the canary's
    pid and the pid of the process whose trace is the large graph."""
    canary, pool = traced
    from playwright.sync_api import sync_playwright

    api = httpx.Client(
        base_url=url,
        verify=ssl_context(ca),
        timeout=300,
        headers={"Authorization": f"Bearer {token}"},
    )
    out: dict[str, float] = {}

    def call(path: str, params: dict[str, str | int]) -> Callable[[], object]:
        return lambda: api.get(path, params=params).raise_for_status()

    first: dict[str, str | int] = {"min_severity": "low", "limit": PAGE, "offset": 0}
    last = first | {"offset": (args.findings - 1) // PAGE * PAGE}
    for name, params in (("first page", first), ("last page", last)):
        out[f"GET findings, {name} (API)"] = timed(
            args.repeat, call("/api/v1/admin/findings", params)
        )
    listed = len(api.get("/api/v1/admin/findings", params=first).json()["findings"])
    print(f"the findings page lists {listed} of the {args.findings} stored", flush=True)
    for name, pid in (("GET trace (API)", canary), ("GET trace, large graph (API)", pool)):
        out[name] = timed(args.repeat, call("/api/v1/admin/trace", {"host": host, "pid": pid}))
    api.close()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(ignore_https_errors=True, base_url=url)
        page = context.new_page()
        page.set_default_timeout(180_000)
        page.goto("/")
        page.click("#with-token summary")
        page.fill("#token", token)
        page.click("#sign-in-form button[type=submit]")
        page.wait_for_selector("#nav:not([hidden])")

        def findings_page() -> None:
            page.goto("about:blank")
            page.goto("/#/findings")
            page.wait_for_function(
                "n => document.getElementById('findings-status')?.textContent.startsWith("
                "`findings 1-${n}`) && document.querySelectorAll('#findings tbody tr').length"
                " === n",
                arg=listed,
            )

        def trace_page() -> None:
            page.goto("about:blank")
            page.goto(f"/#/findings/{finding}")
            page.wait_for_selector("#trace-svg g.node.focus")

        def large_graph() -> float:
            """From Show on the trace of ``pool`` until its graph is drawn."""
            trace_page()
            page.fill("#trace-pid", str(pool))
            began = time.perf_counter()
            page.click("#trace-form button[type=submit]")
            page.wait_for_selector(f"#trace-svg g.node.focus[data-pid='{pool}']")
            return time.perf_counter() - began

        out["findings page, interactive (browser)"] = timed(args.repeat, findings_page)
        out["trace page, graph drawn (browser)"] = timed(args.repeat, trace_page)
        out["trace nodes drawn"] = float(page.locator("#trace-svg g.node").count())
        drawn = [large_graph() for _ in range(args.repeat)]
        out["large graph, Show to drawn (browser)"] = statistics.median(drawn)
        out["large graph nodes drawn"] = float(page.locator("#trace-svg g.node").count())
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--findings", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=2_000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", default="")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        sys.exit(f"no Chromium at {args.chromium}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    try:
        db_url = args.db or f"sqlite:///{tmp / 'fleet.db'}"
        engine = make_engine(db_url)
        upgrade(engine)
        sessions = make_sessionmaker(engine)
        now = int(time.time())
        began = time.perf_counter()
        host = grown_host(args.processes, now)
        host_id = store_host(sessions, host, now)
        canary = host.canaries[-1]
        pool = largest_pool(host)
        finding = store_findings(sessions, args.findings, args.hosts, (host_id, canary.pid), now)
        engine.dispose()
        print(
            f"store: {len(host.procs)} processes on {host.identifier}, {args.findings} findings"
            f" over {args.hosts} hosts, in {time.perf_counter() - began:.1f} s; the large graph"
            f" is {host.procs[pool].name}[{pool}]'s, {len(host.children[pool])} children"
        )
        with server(db_url, tmp / "home") as (url, ca, token):
            traced = (canary.pid, pool)
            results = measure(url, ca, token, args, finding, traced, host.identifier)
        for name, value in results.items():
            shown = f"{value:.0f}" if name.endswith("nodes drawn") else f"{value * 1000:.0f} ms"
            print(f"{name:<40} {shown:>10}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
