"""Fleet simulator: how many osqueryd hosts one server sustains with detection on.

``fleetctl serve`` runs in its own process on a database of its own (SQLite, or a new
PostgreSQL database at 127.0.0.1:5432 that is dropped afterwards). Simulator processes
(asyncio, one pool of kept-alive TLS streams each: ``fleet_http.py``, a client cheap
enough to leave the cores to the server) drive hosts of ``fleet_hosts.py``
as osqueryd would: enroll with its ``host_details``, fetch the config and refresh it
every ``--config_refresh`` seconds of the printed flags, poll ``distributed/read`` at
the config's ``distributed_interval`` (answering what it hands out), run the schedule
the config gives a Linux host (the shipped packs: each query at its splayed interval,
snapshot or differential as the pack says) and flush result lines every 4 s, at most
1,024 per request, gzip-compressed as ``--logger_tls_compress`` asks.

For a ramp of host counts (each step ``--minutes`` long after a warm-up), it measures:

- lag from a host's post to its judgement: at random times (``--canaries`` per minute
  across the fleet) a host starts a shell whose stdin is a FIFO written by another
  process; the clock starts at the post that delivered its evidence (lineage and stdio)
  and stops when ``GET /api/v1/admin/findings?occurred_since=`` lists its occurrence;
- backlog growth: the lag's trend over the step, HTTP errors, requests slower than the
  distributed interval, and the pending work of ``GET /api/v1/admin/detection/status``
  where the server has it;
- request latency per endpoint, and the stored rows/s of differential batches beside
  snapshot batches and differential baselines (counter 0) (offered over the step, and
  per second of request time of posts that carried only one kind).

A step is sustained when every canary was judged, lag p99 < 5 s, the lag did not grow,
and no request failed or fell behind. The last line names the largest sustained count
and hosts per core. A self-check first proves the simulation honest: one host's lines
are all stored (no rejected line, no gap, every row there) and its canary is found.

    .venv/bin/python bench/fleet_sim.py                      # quick: 10, 50, 200 hosts, x0.1
    .venv/bin/python bench/fleet_sim.py --hosts 100,1000,3000,10000 --minutes 10 \\
        --interval-scale 1 --backends postgresql               # the headline run
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import math
import multiprocessing
import os
import random
import shlex
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import orjson
from bench_server import Server, make_db, release_db
from fleet_hosts import CANARY_QUERIES, LOGGER_PERIOD, MAX_LINES, Agent, Canary, Host, Line
from fleet_http import HttpError, Pool, request_headers

from fleetctl.cli.client import ssl_context

API = "/api/v1/osquery/"
TIMEOUT = 16.0  # osqueryd's hard-coded TLS request timeout
ENDPOINTS = ("enroll", "config", "log", "distributed/read", "distributed/write")
LAG_LIMIT = 5.0
CANARY_LIFE = 300.0  # virtual seconds a canary runs before it exits
WINDOW_MARGIN = 120  # s polled before the oldest canary not yet judged
# s between polls of the findings: a lag is read to within this, and each poll costs the
# server a findings listing (at 0.5 s, about an eighth of a worker's time at 60 hosts).
POLL_EVERY = 1.0


@dataclass(frozen=True)
class Plan:
    """What every simulator process needs to know, picklable."""

    url: str
    ca: str
    secret: str
    scale: float
    distributed_interval: int
    config_refresh: int
    gzip_level: int
    seed: int
    origin: float  # virtual time = origin + (real - origin) / scale

    def virtual(self, t: float) -> float:
        return self.origin + (t - self.origin) / self.scale

    def real(self, v: float) -> float:
        return self.origin + (v - self.origin) * self.scale

    @property
    def slow(self) -> float:
        """A request slower than this (the scaled distributed interval) falls behind."""
        return self.distributed_interval * self.scale


@dataclass
class Stats:
    """What one simulator process saw since its last report."""

    latency: dict[str, list[float]] = field(default_factory=lambda: {e: [] for e in ENDPOINTS})
    errors: Counter[str] = field(default_factory=Counter)
    slow: Counter[str] = field(default_factory=Counter)
    rows: Counter[str] = field(default_factory=Counter)  # snapshot / baseline / differential
    pure: dict[str, list[float]] = field(default_factory=dict)  # kind -> rows, seconds, posts
    cpu: float = 0.0
    hosts: int = 0

    def merge(self, other: Stats) -> None:
        for e, values in other.latency.items():
            self.latency.setdefault(e, []).extend(values)
        self.errors.update(other.errors)
        self.slow.update(other.slow)
        self.rows.update(other.rows)
        for kind, values in other.pure.items():
            mine = self.pure.setdefault(kind, [0.0, 0.0, 0.0])
            for i, value in enumerate(values):
                mine[i] += value
        self.cpu += other.cpu
        self.hosts += other.hosts


def headers(agent: Agent | None, gzipped: bool = False) -> dict[str, str]:
    """osqueryd 5.23's headers (the node key also in ``Authorization``)."""
    out = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "osquery/5.23.0",
    }
    if agent is not None and agent.node_key:
        out["Authorization"] = f"NodeKey {agent.node_key}"
    if gzipped:
        out["Content-Encoding"] = "gzip"
    return out


KINDS = ("snapshot", "baseline", "differential")


def tally(lines: Sequence[Line]) -> Counter[str]:
    """Rows in ``lines`` by kind: snapshot, baseline (counter 0) or differential."""
    out: Counter[str] = Counter()
    for ln in lines:
        out[ln.kind] += ln.rows
    return out


def evidence_posted(lines: Sequence[Line], at: float) -> list[Canary]:
    """Mark the canaries whose rows ``lines`` carried as posted at ``at``; those whose
    evidence (lineage and stdio) is now all delivered."""
    done = []
    for line in lines:
        for canary in line.canaries:
            complete = all(q in canary.posted for q in CANARY_QUERIES)
            canary.posted.setdefault(line.query, at)
            if not complete and all(q in canary.posted for q in CANARY_QUERIES):
                done.append(canary)
    return done


# -- one simulator process ---------------------------------------------------------------


class Worker:
    """Simulated hosts in one process, on one event loop and one connection pool."""

    def __init__(self, indices: Sequence[int], plan: Plan, conn: Connection, found: Any) -> None:
        self.indices = list(indices)
        self.plan = plan
        self.conn = conn
        self.found = found  # multiprocessing queue of completed canaries
        self.stats = Stats()
        self.agents: list[Agent] = []
        self.canary_rate = 0.0  # per second, for this process
        self.cpu = time.process_time()
        self.http = Pool(plan.url, ssl_context(plan.ca))
        self.heads: dict[tuple[str, bool], bytes] = {}  # (node key, gzipped) -> header lines

    def head(self, agent: Agent | None, gzipped: bool) -> bytes:
        """A host's request headers, serialised once per node key."""
        key = (agent.node_key if agent is not None else "", gzipped)
        found = self.heads.get(key)
        if found is None:
            found = self.heads[key] = request_headers(headers(agent, gzipped))
        return found

    async def main(self) -> None:
        try:
            tasks = [asyncio.create_task(self.canaries())]
            loop = asyncio.get_running_loop()
            while True:
                command, arg = await loop.run_in_executor(None, self.conn.recv)
                if command == "grow":
                    count, spread, rate = arg
                    self.canary_rate = rate
                    for index in self.indices[len(self.agents) : count]:
                        agent = Agent(Host(index, self.plan.seed, time.time()))
                        self.agents.append(agent)
                        delay = random.uniform(0, spread)
                        tasks.append(asyncio.create_task(self.life(agent, delay)))
                    self.conn.send(len(self.agents))
                elif command == "report":
                    now = time.process_time()
                    self.stats.cpu, self.cpu = now - self.cpu, now
                    self.stats.hosts = sum(1 for a in self.agents if a.node_key)
                    self.conn.send(self.stats)
                    self.stats = Stats()
                else:
                    break
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await self.http.aclose()

    async def post(
        self, endpoint: str, body: bytes, agent: Agent | None, gzipped: bool = False
    ) -> tuple[dict[str, Any] | None, float]:
        """The answer (None on failure, counted) and the request's seconds."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(TIMEOUT):  # osqueryd's limit is for the whole request
                status, raw = await self.http.post(API + endpoint, body, self.head(agent, gzipped))
            answer = orjson.loads(raw)
        except (HttpError, OSError, ValueError, TimeoutError) as exc:
            self.stats.errors[f"{endpoint}: {type(exc).__name__}"] += 1
            return None, time.perf_counter() - started
        elapsed = time.perf_counter() - started
        self.stats.latency[endpoint].append(elapsed)
        if elapsed > self.plan.slow:
            self.stats.slow[endpoint] += 1
        if status != 200 or not isinstance(answer, dict):
            self.stats.errors[f"{endpoint}: HTTP {status}"] += 1
            return None, elapsed
        if answer.get("node_invalid") and agent is not None:
            self.stats.errors[f"{endpoint}: node_invalid"] += 1
            agent.node_key = ""  # osqueryd re-enrolls before its next request
        return answer, elapsed

    async def enroll(self, agent: Agent) -> None:
        for attempt in range(1, 1000):
            answer, _ = await self.post(
                "enroll", agent.enroll_body(self.plan.secret, int(time.time())), None
            )
            if answer and answer.get("node_key"):
                agent.node_key = str(answer["node_key"])
                return
            await asyncio.sleep(min(attempt**2, 600) * self.plan.scale)

    async def configure(self, agent: Agent) -> None:
        if not agent.node_key:
            await self.enroll(agent)
        answer, _ = await self.post("config", agent.keyed(), agent)
        if answer is not None and not answer.get("node_invalid"):
            agent.configure(answer)

    async def life(self, agent: Agent, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.enroll(agent)
        while not agent.schedule:
            await self.configure(agent)
            if not agent.schedule:
                await asyncio.sleep(self.plan.config_refresh * self.plan.scale)
        buffer: list[Line] = []
        await asyncio.gather(
            self.scheduler(agent, buffer),
            self.logger(agent, buffer),
            self.distributed(agent),
            self.refresher(agent),
        )

    async def scheduler(self, agent: Agent, buffer: list[Line]) -> None:
        """osqueryd's scheduler in virtual time: a query runs when a multiple of its
        splayed interval passes; every 60 s the host's processes churn."""
        plan, host = self.plan, agent.host
        previous = plan.virtual(time.time())
        next_churn = previous + host.rng.uniform(0, 60)
        while True:
            due_at = [(math.floor(previous / s) + 1) * s for _, _, s in agent.schedule]
            wake = min([*due_at, next_churn])
            await asyncio.sleep(max(0.0, plan.real(wake) - time.time()))
            now = time.time()
            current = plan.virtual(now)
            if current >= next_churn:
                host.churn(now)
                host.expire_canaries(now, CANARY_LIFE * plan.scale)
                next_churn += 60
            due = agent.due(previous, current)
            if due:
                buffer.extend(agent.run(due, int(now)))
            previous = current

    async def logger(self, agent: Agent, buffer: list[Line]) -> None:
        """Every logger period, up to 1,024 buffered lines in one post."""
        period = max(0.5, LOGGER_PERIOD * self.plan.scale)
        await asyncio.sleep(agent.host.rng.uniform(0, period))
        while True:
            await asyncio.sleep(period)
            if not buffer or not agent.node_key:
                continue
            batch = buffer[:MAX_LINES]
            body = agent.log_body(batch)
            level = self.plan.gzip_level
            if level:
                body = gzip.compress(body, level)
            sent = time.time()
            answer, elapsed = await self.post("log", body, agent, gzipped=bool(level))
            if answer is None or answer.get("node_invalid"):
                continue  # osqueryd keeps the lines and sends them again
            del buffer[: len(batch)]
            kinds = tally(batch)
            self.stats.rows.update(kinds)
            if len(kinds) == 1:
                ((kind, rows),) = kinds.items()
                pure = self.stats.pure.setdefault(kind, [0.0, 0.0, 0.0])
                pure[0] += rows
                pure[1] += elapsed
                pure[2] += 1
            for canary in evidence_posted(batch, sent):
                self.found.put((canary.host, canary.pid, tuple(sorted(canary.posted.values()))))

    async def distributed(self, agent: Agent) -> None:
        interval = self.plan.distributed_interval * self.plan.scale
        await asyncio.sleep(agent.host.rng.uniform(0, interval))
        while True:
            if agent.node_key:
                answer, _ = await self.post("distributed/read", agent.keyed(), agent)
                queries = (answer or {}).get("queries") or {}
                if queries:  # no table answers here: empty results, status ok
                    write = {
                        "queries": {q: [] for q in queries},
                        "statuses": {q: 0 for q in queries},
                        "messages": {q: "" for q in queries},
                    }
                    await self.post("distributed/write", agent.keyed(write), agent)
            await asyncio.sleep(interval)

    async def refresher(self, agent: Agent) -> None:
        while True:
            await asyncio.sleep(self.plan.config_refresh * self.plan.scale)
            await self.configure(agent)

    async def canaries(self) -> None:
        """Canaries at random times on random hosts that have posted a baseline."""
        while True:
            if self.canary_rate <= 0:
                await asyncio.sleep(1)
                continue
            await asyncio.sleep(random.expovariate(self.canary_rate))
            ready = [a for a in self.agents if a.states and a.node_key]
            if ready:
                random.choice(ready).host.add_canary(time.time())


def worker_main(indices: Sequence[int], plan: Plan, conn: Connection, found: Any) -> None:
    asyncio.run(Worker(indices, plan, conn, found).main())


# -- the measuring side ------------------------------------------------------------------


def canary_lag(posted: Sequence[float], judged: float) -> float:
    """Seconds from the last post of a canary's rows (``posted``: in order) at or before
    the moment its finding was seen to that moment."""
    enabled = max((t for t in posted if t <= judged), default=posted[0])
    return max(0.0, judged - enabled)


class Judgements:
    """Canaries reported by the simulators, matched with the findings the admin API
    lists, in a thread of the main process."""

    def __init__(self, server: Server, found: Any) -> None:
        self.found = found
        self.admin = httpx.Client(
            base_url=server.url,
            verify=ssl_context(str(server.home / "tls" / "ca.pem")),
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=60,
        )
        self.since = int(time.time())
        # When each query carrying a canary's rows first posted them, in order: the last
        # is when its lineage and stdio were both delivered ("complete").
        self.canaries: dict[tuple[str, int], tuple[float, ...]] = {}
        self.judged: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(POLL_EVERY):
            while not self.found.empty():
                host, pid, posted = self.found.get()
                with self.lock:
                    self.canaries[(host, pid)] = posted
            try:
                answer = self.admin.get(
                    "/api/v1/admin/findings",
                    params={"occurred_since": str(self.window()), "min_severity": "high"},
                ).json()
            except (httpx.HTTPError, ValueError):
                continue
            seen = time.time()
            with self.lock:
                for finding in answer.get("findings", []):
                    for occurrence in finding.get("occurrences_since", []):
                        self.judged.setdefault((finding["host"], int(occurrence["pid"])), seen)

    def window(self) -> int:
        """Where the poll's ``occurred_since`` starts: a margin before the oldest canary
        not yet judged. Listing everything since the run began would make the measuring
        side cost the server more with every minute of the run."""
        with self.lock:
            pending = [posted[0] for key, posted in self.canaries.items() if key not in self.judged]
        return max(self.since, int(min(pending, default=time.time())) - WINDOW_MARGIN)

    def lags(self, start: float, end: float) -> tuple[list[tuple[float, float]], int]:
        """(completed at, lag) of the canaries completed in [start, end), and how many of
        them were never judged. The lag runs from the last post of the canary's rows
        before its judgement: a canary can be found before its stdio row arrives (its
        FIFO's other end named by ``pipe_partners``, say), and then that post, not the
        first one, is what the server answered."""
        out, missing = [], 0
        with self.lock:
            for key, posted in self.canaries.items():
                complete = posted[-1]
                if not start <= complete < end:
                    continue
                judged = self.judged.get(key)
                if judged is None:
                    missing += 1
                else:
                    out.append((complete, canary_lag(posted, judged)))
        return sorted(out), missing

    def detection_status(self) -> dict[str, Any] | None:
        """The server's detection backlog, where it has the endpoint (None: n/a)."""
        try:
            response = self.admin.get("/api/v1/admin/detection/status")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.admin.close()


def cpu_seconds(pid: int, database: str) -> tuple[float, float, float]:
    """User + system CPU seconds of ``pid`` with its child processes (workers of
    ``serve``), of those children that are judge processes (named ``fleetctl-judge<i>``),
    and of the PostgreSQL backends serving ``database``."""
    tick = os.sysconf("SC_CLK_TCK")
    server = judges = backends = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            comm, rest = stat.read_text().rsplit(")", 1)
            fields = rest.split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            server += used
            if comm.partition("(")[2].startswith("fleetctl-judge"):
                judges += used
        elif cmdline.startswith(b"postgres: ") and f" {database} ".encode() in cmdline:
            backends += used
    return server, judges, backends


def machine_busy() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine so far (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def growth(lags: Sequence[tuple[float, float]]) -> float:
    """Median lag of the step's second half minus its first half's (seconds)."""
    if len(lags) < 4:
        return 0.0
    half = len(lags) // 2
    return statistics.median(v for _, v in lags[half:]) - statistics.median(
        v for _, v in lags[:half]
    )


@dataclass
class Step:
    backend: str
    hosts: int
    seconds: float
    stats: Stats
    lags: list[tuple[float, float]]
    missing: int
    # server, its database backends, the whole machine, the server's judge processes
    cpu: tuple[float, float, float, float]
    status: tuple[dict[str, Any] | None, dict[str, Any] | None]

    @property
    def lag_values(self) -> list[float]:
        return [v for _, v in self.lags]

    def problems(self) -> list[str]:
        out = []
        lags = self.lag_values
        if not lags:
            out.append("no canary judged")
        if self.missing:
            out.append(f"{self.missing} canaries never judged")
        if lags and percentile(lags, 99) >= LAG_LIMIT:
            out.append(f"lag p99 {percentile(lags, 99):.1f} s >= {LAG_LIMIT:.0f} s")
        grew = growth(self.lags)
        if grew > max(1.0, 0.5 * statistics.median(lags or [0])):
            out.append(f"lag grew {grew:+.1f} s over the step")
        if self.stats.errors:
            out.append(f"{sum(self.stats.errors.values())} failed requests")
        if self.stats.slow:
            out.append(f"{sum(self.stats.slow.values())} requests slower than the interval")
        if self.stats.hosts < self.hosts:
            out.append(f"only {self.stats.hosts} hosts enrolled")
        return out


def show(step: Step, scale: float) -> None:
    s = step.stats
    print(
        f"\n== {step.hosts:,} hosts on {step.backend}: {step.seconds / 60:.1f} min"
        f" (intervals x{scale:g}), {s.hosts:,} enrolled"
    )
    columns = (
        ("requests", 9),
        ("errors", 8),
        ("slow", 6),
        ("p50 ms", 9),
        ("p95 ms", 9),
        ("p99 ms", 9),
    )
    print(f"  {'endpoint':<18}" + "".join(f"{name:>{width}}" for name, width in columns))
    for endpoint in ENDPOINTS:
        values = [v * 1000 for v in s.latency.get(endpoint, [])]
        errors = sum(n for k, n in s.errors.items() if k.startswith(f"{endpoint}:"))
        print(
            f"  {endpoint:<18}{len(values):>9,}{errors:>8}{s.slow[endpoint]:>6}"
            f"{percentile(values, 50):>9.1f}{percentile(values, 95):>9.1f}"
            f"{percentile(values, 99):>9.1f}"
        )
    for kind, count in s.errors.most_common(3):
        print(f"  error: {kind} x{count}")
    lags = step.lag_values
    print(
        f"  lag post -> judgement: {len(lags)} canaries, {step.missing} missing;"
        f" p50 {percentile(lags, 50):.2f} s, p95 {percentile(lags, 95):.2f} s,"
        f" p99 {percentile(lags, 99):.2f} s, max {max(lags, default=math.nan):.2f} s;"
        f" second half vs first {growth(step.lags):+.2f} s"
    )
    for kind in KINDS:
        rows, seconds, posts = s.pure.get(kind, [0.0, 0.0, 0.0])
        per_request = "n/a"
        if posts:
            per_request = (
                f"{rows / seconds:,.0f} rows/s of request time, {rows / posts:,.0f} rows"
                f" in {seconds / posts * 1000:,.0f} ms per post"
            )
        print(
            f"  {kind:<12} rows stored: {s.rows[kind] / step.seconds:>9,.0f}/s offered,"
            f" {per_request} (posts of {kind} lines only)"
        )
    before, after = step.status
    shown = "n/a (no /api/v1/admin/detection/status)"
    if after is not None:
        shown_keys = ("pending", "lag", "judge", "judged", "rebuild", "incremental")
        keys = [k for k in after if any(word in k for word in shown_keys)] or list(after)
        shown = ", ".join(f"{k} {before.get(k) if before else '?'} -> {after[k]}" for k in keys)
    print(f"  detection status: {shown}")
    client = s.cpu / step.seconds
    print(
        f"  cpu in cores: server {step.cpu[0] / step.seconds:.2f}"
        + (f" (judge processes {step.cpu[3] / step.seconds:.2f})" if step.cpu[3] else "")
        + f", its PostgreSQL backends"
        f" {step.cpu[1] / step.seconds:.2f}, simulator (the client) {client:.2f}, i.e."
        f" {s.hosts / max(client, 1e-9):,.0f} hosts per client core; the whole machine"
        f" {step.cpu[2] / step.seconds:.2f} busy of {os.cpu_count()} (shared)"
    )
    problems = step.problems()
    print(f"  sustained: {'yes' if not problems else 'no: ' + '; '.join(problems)}")


# -- honesty -----------------------------------------------------------------------------


def self_check(url: str, ca: str, secret: str, token: str, gzip_level: int = 1) -> list[str]:
    """One simulated host through the server's own ingest: every line accepted and stored
    (no rejected line, no gap, the rows the host has), and its canary judged. Returns
    what was wrong (nothing: the simulation is honest)."""
    problems: list[str] = []
    host = Host(99_999, 4242, time.time())
    agent = Agent(host)
    verify = ssl_context(ca)
    with (
        httpx.Client(base_url=url, verify=verify, timeout=60) as http,
        httpx.Client(
            base_url=url,
            verify=verify,
            timeout=60,
            headers={"Authorization": f"Bearer {token}"},
        ) as admin,
    ):

        def post(endpoint: str, body: bytes, gzipped: bool = False) -> dict[str, Any]:
            r = http.post(API + endpoint, content=body, headers=headers(agent, gzipped))
            answer: dict[str, Any] = r.json()
            if r.status_code != 200 or answer.get("node_invalid") is not False:
                problems.append(f"{endpoint}: HTTP {r.status_code} {answer}")
            return answer

        agent.node_key = str(
            post("enroll", agent.enroll_body(secret, int(time.time()))).get("node_key")
        )
        agent.configure(post("config", agent.keyed()))
        shorts = {short for _, short, _ in agent.schedule}
        if not {"process_lineage", "stdio_channels", "unix_sockets"} <= shorts:
            problems.append(f"the config schedules only {sorted(shorts)}")

        def deliver(lines: list[Line]) -> None:
            for i in range(0, len(lines), MAX_LINES):
                body = agent.log_body(lines[i : i + MAX_LINES])
                post(
                    "log", gzip.compress(body, gzip_level) if gzip_level else body, bool(gzip_level)
                )

        deliver(agent.run(agent.schedule, int(time.time())))
        time.sleep(1.0)  # osqueryd never runs a query twice in one second (unixTime)
        host.churn(time.time())
        canary = host.add_canary(time.time())
        deliver(agent.run(agent.schedule, int(time.time())))
        time.sleep(1.1)  # stored rows are kept per second: ask about a second after
        loss = admin.get("/api/v1/admin/data-loss", params={"host": host.identifier}).json()
        if loss["rejected"] or loss["data_loss"]:
            problems.append(f"lines not stored: {loss}")
        for query in ("process_lineage", "stdio_channels", "unix_sockets", "unix_listeners"):
            stored = admin.get(
                "/api/v1/admin/results", params={"host": host.identifier, "query": query}
            ).json()
            if len(stored.get("rows", [])) != len(host.rows(query)):
                problems.append(
                    f"{query}: {len(stored.get('rows', []))} rows stored,"
                    f" the host has {len(host.rows(query))}"
                )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            findings = admin.get(
                "/api/v1/admin/findings", params={"host": host.identifier, "min_severity": "high"}
            ).json()["findings"]
            if any(f["pid"] == canary.pid for f in findings):
                break
            time.sleep(0.2)
        else:
            problems.append(f"the canary (pid {canary.pid}) was not judged within 60 s")
    return problems


# -- the ramp ----------------------------------------------------------------------------


def flags(server: Server) -> dict[str, str]:
    """The osqueryd flags the server printed (``--name=value`` lines)."""
    out = {}
    for line in (server.home / "osquery.flags").read_text().splitlines():
        name, _, value = line.removeprefix("--").partition("=")
        out[name] = value
    return out


def ask(workers: Sequence[tuple[Any, Connection]], command: str, args: Sequence[Any]) -> list[Any]:
    for (_, conn), arg in zip(workers, args, strict=True):
        conn.send((command, arg))
    return [conn.recv() for _, conn in workers]


def run_backend(backend: str, args: argparse.Namespace) -> list[Step]:
    url = make_db(backend)
    workers = () if args.workers is None else ("--workers", str(args.workers))
    server = Server(url, (*workers, *shlex.split(args.serve_args)))
    steps: list[Step] = []
    try:
        ca = str(server.home / "tls" / "ca.pem")
        problems = self_check(server.url, ca, server.secret, server.token, args.gzip_level)
        print(f"\nself-check on {backend}: {'ok' if not problems else '; '.join(problems)}")
        if problems:
            raise SystemExit(1)
        printed = flags(server)
        plan = Plan(
            url=server.url,
            ca=ca,
            secret=server.secret,
            scale=args.interval_scale,
            distributed_interval=int(printed["distributed_interval"]),
            config_refresh=int(printed["config_refresh"]),
            gzip_level=args.gzip_level,
            seed=args.seed,
            origin=time.time(),
        )
        ramp = args.hosts
        spawn = multiprocessing.get_context("spawn")
        found = spawn.Queue()
        workers = []
        for w in range(args.procs):
            mine, theirs = spawn.Pipe()
            indices = list(range(w, ramp[-1], args.procs))
            proc = spawn.Process(target=worker_main, args=(indices, plan, theirs, found))
            proc.start()
            workers.append((proc, mine))
        judgements = Judgements(server, found)
        try:
            for hosts in ramp:
                steps.append(measure(backend, hosts, args, plan, server, workers, judgements))
                show(steps[-1], plan.scale)
                if steps[-1].problems() and not args.keep_going:
                    break
        finally:
            judgements.close()
            for _, conn in workers:
                conn.send(("stop", None))
            for proc, _ in workers:
                proc.join(timeout=30)
    finally:
        server.stop()
        release_db(backend, url)
    return steps


def measure(
    backend: str,
    hosts: int,
    args: argparse.Namespace,
    plan: Plan,
    server: Server,
    workers: Sequence[tuple[Any, Connection]],
    judgements: Judgements,
) -> Step:
    """Grow the fleet to ``hosts``, let it settle, then measure ``--minutes``."""
    share = [len(range(w, hosts, len(workers))) for w in range(len(workers))]
    spread = 60 * plan.scale  # new hosts start over one interval, not all at once
    rate = args.canaries / 60 / len(workers)
    ask(workers, "grow", [(n, spread, rate) for n in share])
    time.sleep(spread + args.warmup * plan.scale)
    ask(workers, "report", [None] * len(workers))  # drop the warm-up's figures
    status_before = judgements.detection_status()
    database = server.db_url.rsplit("/", 1)[1]
    before, busy_before, start = cpu_seconds(server.proc.pid, database), machine_busy(), time.time()
    time.sleep(args.minutes * 60)
    end = time.time()
    after, busy_after = cpu_seconds(server.proc.pid, database), machine_busy()
    busy = (
        (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1]) * (os.cpu_count() or 1)
    )
    # A backend that exits during the step takes its CPU with it: a lower bound.
    cpu = (
        after[0] - before[0],
        max(0.0, after[2] - before[2]),
        busy * (end - start),
        max(0.0, after[1] - before[1]),  # a judge process that restarts takes its CPU
    )
    stats = Stats()
    for part in ask(workers, "report", [None] * len(workers)):
        stats.merge(part)
    status_after = judgements.detection_status()
    time.sleep(min(30.0, max(LAG_LIMIT * 2, 4 * LOGGER_PERIOD * plan.scale)))  # late judgements
    lags, missing = judgements.lags(start, end)
    return Step(
        backend,
        hosts,
        end - start,
        stats,
        lags,
        missing,
        cpu,
        (status_before, status_after),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    counts: Callable[[str], list[int]] = lambda text: [int(n) for n in text.split(",") if n]  # noqa: E731
    parser.add_argument("--hosts", type=counts, default=[10, 50, 200], help="the ramp: 100,1000")
    parser.add_argument("--minutes", type=float, default=1.0, help="measured per step")
    parser.add_argument("--interval-scale", type=float, default=0.1, help="1 = real 60 s intervals")
    parser.add_argument(
        "--warmup", type=float, default=120, help="interval seconds before measuring"
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--procs", type=int, default=2, help="simulator processes")
    parser.add_argument("--canaries", type=float, default=12, help="per minute, fleet-wide")
    parser.add_argument("--gzip-level", type=int, default=1, help="0: uncompressed; osqueryd: 9")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--serve-args", default="", help="more `fleetctl serve` options")
    parser.add_argument(
        "--workers", type=int, default=None, help="serve --workers (default: the server's)"
    )
    parser.add_argument("--keep-going", action="store_true", help="ramp on after a failed step")
    args = parser.parse_args(argv)
    print(
        f"cores: {os.cpu_count()} (shared with other work)  python: {sys.version.split()[0]}"
        f"  ramp: {args.hosts}  intervals x{args.interval_scale:g}  {args.minutes:g} min/step"
    )
    best: dict[str, int] = {}
    for backend in [b for b in args.backends.split(",") if b]:
        for step in run_backend(backend, args):
            if not step.problems():
                best[backend] = max(best.get(backend, 0), step.hosts)
    cores = os.cpu_count() or 1
    for backend in [b for b in args.backends.split(",") if b]:
        n = best.get(backend, 0)
        print(
            f"\n{backend}: largest sustained {n:,} hosts (lag p99 < {LAG_LIMIT:.0f} s, no"
            f" backlog growth) = {n / cores:,.0f} hosts per core ({cores} cores, shared;"
            f" intervals x{args.interval_scale:g})"
        )


if __name__ == "__main__":
    main()
