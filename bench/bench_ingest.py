"""Ingest benchmark: stored rows/s of result bodies beside the database's own bulk write
of the same rows, measured in one run, per database (SQLite, PostgreSQL).

Bodies come from the simulated hosts of ``fleet_hosts.py`` (about 400 processes with their
stdio, pipe and socket rows; ``churn`` replaces 3% of them per 60 s interval), logged as
the shipped ``ipc-telemetry`` pack's queries:

- ``snapshot new``: each host's first snapshot of every modelled query (about 2,500 rows,
  all new to the store);
- ``snapshot repeat``: the same after an interval of churn (most rows confirmed, a few
  opened, the rest closed);
- ``differential``: one interval of churn in event format (about 150 lines of removed
  and added rows per request), after a baseline that is applied untimed.

Each kind goes through three paths, each with its own hosts:

- ``apply``: ``storage.results.apply_runs`` on runs parsed beforehand, one transaction
  per body, collecting the detection queries' changes as the server does;
- ``service``: ``node_service.ingest_log`` on the body's JSON (parse, digests,
  redelivery check, quarantine, apply), one transaction per body;
- ``http``: ``POST /api/v1/osquery/log`` to ``fleetctl serve`` in its own process
  (detection on), from two sending threads; each phase starts once detection has judged
  what the one before marked, so its own judgements are all it shares the server with.

The baseline is the same rows (one per line's row: host, name, hash, JSON columns,
times) written into an empty table shaped and indexed like ``result_rows`` in the same
database: ``COPY`` on PostgreSQL, the driver's ``executemany`` on SQLite; ``bulk`` in one
transaction (target: ratio >= 0.5), ``bulk/p`` in one transaction per post, as ingest
must commit each post before it answers.

A kind's posts go in rounds (its churn intervals; first snapshots in as many rounds of
hosts), each round followed at once by the baseline of its own rows, and the figures
printed are medians over the rounds (ratios: the median of each round's ratio to its own
baseline), so a swing of the machine's load moves a round and its baseline together
instead of one run's baseline and another moment's ingest.

    .venv/bin/python bench/bench_ingest.py [--hosts N] [--intervals N]
        [--backends sqlite,postgresql] [--paths apply,service,http]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import psycopg
from bench_server import Server, make_db, release_db
from fleet_hosts import MAX_LINES, MODELLED, Host, QueryState, run_lines

from fleetctl.ingest import parse_result_lines
from fleetctl.server.detection_service import DETECTION_QUERIES
from fleetctl.server.node_service import PackIndex, ingest_log
from storage import hosts as host_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.migrate import upgrade
from storage.results import apply_runs
from storage.runs import Run, row_hash

PACK = "ipc-telemetry"
T0 = 1_700_000_000
INTERVAL = 60
KINDS = ("snapshot new", "snapshot repeat", "differential")
# The modelled queries the shipped pack logs as state (not events), with their SQL's shape.
QUERIES = tuple(sorted(q for q in MODELLED if q != "process_exec_events"))


@dataclass
class Body:
    """One log request of one host: its lines and the rows they carry."""

    host: int
    lines: list[bytes]
    rows: int
    round: int = 0  # bodies of one round are timed together, then their baseline


@dataclass
class Workload:
    """The bodies of one path: untimed setup, then each timed kind's."""

    identifiers: list[str]
    setup: list[Body] = field(default_factory=list)
    kinds: dict[str, list[Body]] = field(default_factory=dict)


def _chunks(lines: list[bytes]) -> Iterator[list[bytes]]:
    for i in range(0, len(lines), MAX_LINES):
        yield lines[i : i + MAX_LINES]


def workload(first_host: int, hosts: int, intervals: int) -> Workload:
    """Bodies of ``hosts`` snapshot hosts and ``hosts`` differential hosts (host numbers
    from ``first_host``), interval by interval across the fleet as a fleet posts them."""
    snap = [Host(first_host + i, first_host + i, T0) for i in range(hosts)]
    diff = [Host(first_host + hosts + i, first_host + hosts + i, T0) for i in range(hosts)]
    work = Workload([h.identifier for h in (*snap, *diff)])
    states = [{q: QueryState() for q in QUERIES} for _ in diff]

    def lines_of(h: Host, snapshot: bool, st: dict[str, QueryState], t: int) -> list[bytes]:
        out: list[bytes] = []
        for q in QUERIES:
            name = f"pack_{PACK}_{q}"
            state = st.get(q, QueryState())
            out += run_lines(h, name, q, "SELECT 1", snapshot, True, state, t)[0]
        return out

    def body(index: int, lines: list[bytes], round_: int = 0) -> Body:
        return Body(index, lines, sum(_row_count(line) for line in lines), round_)

    for i, h in enumerate(snap):  # first snapshots: rounds of hosts, as many as intervals
        first = body(i, lines_of(h, True, {}, T0), i % max(1, intervals))
        work.kinds.setdefault("snapshot new", []).append(first)
    for i, h in enumerate(diff):
        for chunk in _chunks(lines_of(h, False, states[i], T0)):
            work.setup.append(body(hosts + i, chunk))
    for k in range(1, intervals + 1):
        t = T0 + k * INTERVAL
        for i, h in enumerate(snap):
            h.churn(t)
            repeat = body(i, lines_of(h, True, {}, t), k)
            work.kinds.setdefault("snapshot repeat", []).append(repeat)
        for i, h in enumerate(diff):
            h.churn(t)
            for chunk in _chunks(lines_of(h, False, states[i], t)):
                work.kinds.setdefault("differential", []).append(body(hosts + i, chunk, k))
    return work


def _row_count(line: bytes) -> int:
    doc = orjson.loads(line)
    return len(doc["snapshot"]) if "snapshot" in doc else 1


def _data(lines: list[bytes]) -> bytes:
    return b"[" + b",".join(lines) + b"]"


# --------------------------------------------------------------------------- baseline


def baseline_rows(bodies: list[Body], host_ids: list[int]) -> list[list[tuple[Any, ...]]]:
    """Each body's rows, as ``result_rows`` rows (hashed and encoded beforehand: the
    baseline is the database's own write)."""
    out = []
    for b in bodies:
        rows = []
        for line in orjson.loads(_data(b.lines)):
            found = line["snapshot"] if "snapshot" in line else [line["columns"]]
            t = line["unixTime"]
            for columns in found:
                rows.append(
                    (
                        host_ids[b.host],
                        line["name"],
                        row_hash(columns),
                        orjson.dumps(columns).decode(),
                        1,
                        t,
                        None,
                        t,
                    )
                )
        out.append(rows)
    return out


COLUMNS = "host_id, name, row_hash, columns, copies, first_seen, removed_at, seen_at"


def baseline_rates(
    backend: str, url: str, bodies: list[list[tuple[Any, ...]]]
) -> tuple[float, float]:
    """Rows/s of the driver's bulk write (COPY / executemany) of the bodies' rows into a
    new table shaped and indexed like ``result_rows``: all in one transaction, and one
    transaction per body (what a commit per request costs the database itself)."""
    rows = sum(len(b) for b in bodies)
    if backend == "sqlite":
        return tuple(  # type: ignore[return-value]
            rows / _sqlite_baseline(url.removeprefix("sqlite:///"), groups)
            for groups in ([[r for b in bodies for r in b]], bodies)
        )
    rates = []
    with psycopg.connect(url) as conn:
        for groups in ([[r for b in bodies for r in b]], bodies):
            conn.execute("DROP TABLE IF EXISTS bench_rows")
            conn.execute("CREATE TABLE bench_rows (LIKE result_rows INCLUDING ALL)")
            conn.commit()
            started = time.perf_counter()
            for group in groups:
                with (
                    conn.cursor() as cur,
                    cur.copy(f"COPY bench_rows ({COLUMNS}) FROM STDIN") as copy,
                ):
                    for row in group:
                        copy.write_row(row)
                conn.commit()
            rates.append(rows / (time.perf_counter() - started))
        conn.execute("DROP TABLE bench_rows")
        conn.commit()
    return rates[0], rates[1]


def _sqlite_baseline(path: str, groups: list[list[tuple[Any, ...]]]) -> float:
    """Seconds to write ``groups`` of rows, a transaction each."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")  # as storage.engine sets it
    ddl = [
        sql
        for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'result_rows' AND sql IS NOT NULL"
            " ORDER BY type DESC"  # the table, then its indexes
        )
    ]
    conn.execute("DROP TABLE IF EXISTS bench_rows")
    for sql in ddl:
        conn.execute(sql.replace("result_rows", "bench_rows"))
    started = time.perf_counter()
    for group in groups:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            f"INSERT INTO bench_rows ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", group
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.execute("DROP TABLE bench_rows")
    conn.close()
    return elapsed


# --------------------------------------------------------------------------- the paths


def enroll_direct(url: str, identifiers: list[str]) -> list[int]:
    factory = make_sessionmaker(make_engine(url))
    ids = []
    with session_scope(factory) as session:
        for ident in identifiers:
            host, *_ = host_store.enroll_host(
                session,
                host_identifier=ident,
                platform_type="9",
                host_details={"system_info": {"uuid": f"uuid-{ident}", "hostname": ident}},
                node_key_hash=f"{ident:x<64}"[:64],
                now=T0,
            )
            ids.append(int(host.id))
    return ids


Sender = Callable[[list[Body]], float]


def settle(server: Server, client: httpx.Client) -> None:
    """Wait until detection has judged every host marked so far, so a timed phase does
    not share the server with the judgements of the one before it."""
    headers = {"Authorization": f"Bearer {server.token}"}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = client.get("/api/v1/admin/detection/status", headers=headers).json()
        if not status.get("pending_hosts"):
            return
        time.sleep(0.2)
    raise RuntimeError("detection did not catch up in 10 minutes")


def apply_sender(url: str, host_ids: list[int]) -> Sender:
    """Bodies parsed beforehand, then ``apply_runs`` timed, one transaction per body."""
    factory = make_sessionmaker(make_engine(url))
    collect = DETECTION_QUERIES.__contains__

    def send(bodies: list[Body]) -> float:
        parsed: list[tuple[int, list[Run]]] = []
        for b in bodies:
            batch = parse_result_lines(orjson.loads(_data(b.lines)), (PACK,))
            assert not batch.rejected, batch.rejected[:1]
            parsed.append((host_ids[b.host], batch.runs))
        started = time.perf_counter()
        for host_id, runs in parsed:
            with session_scope(factory) as session:
                apply_runs(session, host_id, runs, T0, (PACK,), collect=collect)
        return time.perf_counter() - started

    return send


def service_sender(url: str, host_ids: list[int]) -> Sender:
    """``node_service.ingest_log`` on each body's JSON, one transaction per body."""
    factory = make_sessionmaker(make_engine(url))
    with session_scope(factory) as session:
        packs = PackIndex.of(session)
    collect = DETECTION_QUERIES.__contains__

    def send(bodies: list[Body]) -> float:
        raw = [(host_ids[b.host], _data(b.lines)) for b in bodies]
        started = time.perf_counter()
        for host_id, data in raw:
            with session_scope(factory) as session:
                stats = ingest_log(
                    session, host_id, "result", orjson.loads(data), T0, packs, collect=collect
                )
                assert not stats.rejected
        return time.perf_counter() - started

    return send


def http_sender(server: Server, identifiers: list[str], senders: int = 2) -> Sender:
    """``POST /log`` bodies from ``senders`` threads (each its own hosts, in order)."""
    clients = [
        httpx.Client(base_url=server.url, verify=server.ssl, timeout=300) for _ in range(senders)
    ]
    keys = []
    for i, ident in enumerate(identifiers):
        body = {
            "enroll_secret": server.secret,
            "host_identifier": ident,
            "platform_type": "9",
            "host_details": {"system_info": {"uuid": f"uuid-{ident}", "hostname": ident}},
        }
        answer = clients[i % senders].post("/api/v1/osquery/enroll", json=body).json()
        keys.append(orjson.dumps(answer["node_key"]))

    def send(bodies: list[Body]) -> float:
        queues: list[list[bytes]] = [[] for _ in clients]
        for b in bodies:
            queues[b.host % senders].append(
                b'{"node_key":'
                + keys[b.host]
                + b',"log_type":"result","data":'
                + _data(b.lines)
                + b"}"
            )
        errors: list[str] = []
        settle(server, clients[0])

        def post(i: int) -> None:
            for content in queues[i]:
                answer = clients[i].post(
                    "/api/v1/osquery/log",
                    content=content,
                    headers={"Content-Type": "application/json"},
                )
                if answer.json() != {"node_invalid": False}:
                    errors.append(answer.text)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(senders)]
        started = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - started
        if errors:
            raise RuntimeError(errors[0])
        return elapsed

    return send


# --------------------------------------------------------------------------- a run


@dataclass
class Result:
    """One kind through one path: per round, the path's rows/s and the baseline's, each
    round's baseline written right after the round itself (load on a shared machine
    moves both alike); figures are medians over the rounds."""

    backend: str
    path: str
    kind: str
    rows: int
    requests: int
    seconds: float
    rates: list[float]  # rows/s of the path, per round
    bulks: list[float]  # rows/s of the bulk write, one transaction, per round
    per_posts: list[float]  # rows/s of the bulk write, one transaction per post

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def baseline(self) -> float:
        return statistics.median(self.bulks)

    @property
    def per_post(self) -> float:
        return statistics.median(self.per_posts)

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios to their own bulk write."""
        return statistics.median(r / b for r, b in zip(self.rates, self.bulks, strict=True))

    @property
    def ratio_per_post(self) -> float:
        return statistics.median(r / b for r, b in zip(self.rates, self.per_posts, strict=True))


def _rounds(bodies: list[Body]) -> list[list[Body]]:
    """The bodies by round, rounds in order, each round's bodies in their order."""
    rounds: dict[int, list[Body]] = {}
    for b in bodies:
        rounds.setdefault(b.round, []).append(b)
    return [rounds[k] for k in sorted(rounds)]


def run_path(
    backend: str, url: str, path: str, work: Workload, server: Server | None
) -> list[Result]:
    host_ids = enroll_direct(url, work.identifiers) if path != "http" else []
    if path == "apply":
        send = apply_sender(url, host_ids)
    elif path == "service":
        send = service_sender(url, host_ids)
    else:
        assert server is not None
        send = http_sender(server, work.identifiers)
        host_ids = list(range(1, len(work.identifiers) + 1))  # baseline rows only
    results = []
    send(work.setup)
    for kind in KINDS:
        bodies = work.kinds[kind]
        result = Result(backend, path, kind, 0, len(bodies), 0.0, [], [], [])
        for group in _rounds(bodies):
            seconds = send(group)
            bulk, per_post = baseline_rates(backend, url, baseline_rows(group, host_ids))
            rows = sum(b.rows for b in group)
            result.rows += rows
            result.seconds += seconds
            result.rates.append(rows / seconds)
            result.bulks.append(bulk)
            result.per_posts.append(per_post)
        results.append(result)
    return results


def print_result(r: Result) -> None:
    print(
        f"{r.backend:<11}{r.path:<9}{r.kind:<17}{r.requests:>6}{r.rows:>9}"
        f"{r.rows / r.requests:>9.0f}{r.seconds * 1000 / r.requests:>9.1f}"
        f"{r.rate:>10,.0f}{r.baseline:>10,.0f}{r.ratio:>7.2f}"
        f"{r.per_post:>10,.0f}{r.ratio_per_post:>7.2f}{len(r.rates):>7}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10, help="hosts per kind and path")
    parser.add_argument("--intervals", type=int, default=5, help="churn intervals")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--paths", default="apply,service,http")
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    print(f"cores: {os.cpu_count()}  python: {sys.version.split()[0]}  load: {os.getloadavg()}")
    print(
        f"{args.hosts} hosts per kind and path, {args.intervals} intervals of 3% churn;"
        " baseline: COPY (PostgreSQL) / executemany (SQLite) of the same rows into a table"
        " shaped and indexed like result_rows, same database, same run; each round of"
        " posts is followed by its own baseline, and rows/s, bulk and ratios are medians"
        " over the rounds\n"
    )
    print(
        f"{'backend':<11}{'path':<9}{'kind':<17}{'posts':>6}{'rows':>9}{'rows/p':>9}"
        f"{'ms/post':>9}{'rows/s':>10}{'bulk':>10}{'ratio':>7}{'bulk/p':>10}{'ratio':>7}"
        f"{'rounds':>7}"
    )
    for backend in [b for b in args.backends.split(",") if b]:
        url = make_db(backend)
        server = None
        try:
            engine = make_engine(url)
            upgrade(engine)
            engine.dispose()
            if "http" in paths:
                server = Server(url)
            for n, path in enumerate(paths):
                work = workload(1000 * (n + 1), args.hosts, args.intervals)
                for r in run_path(backend, url.replace("+psycopg", ""), path, work, server):
                    print_result(r)
        finally:
            if server is not None:
                server.stop()
            release_db(backend, url)


if __name__ == "__main__":
    main()
