"""History that grows well: as-of reads at 1x and 10x history, ``db prune``, bytes per
stored row, and what those figures say of 10,000 hosts kept 90 days.

The fleet is ``fleet_hosts.py``'s simulated Linux hosts (about 400 processes with their
stdio, pipe and socket rows). Their runs go through the store's own apply
(``storage.results.apply_runs``, no HTTP: the history's shape is the point here, not
ingest speed): a baseline, then ``--intervals`` intervals of the simulator's churn (3% of
the processes replaced per interval) one day apart, so that on PostgreSQL each interval's
closed rows fill a day partition as a day of a real fleet does. Stored names are the
shipped packs': ``process_lineage``, ``pipe_partners`` and ``stdio_channels`` as
snapshots, ``unix_sockets`` and ``unix_listeners`` as differentials; the stdio rows are
stored as the extension's ``process_stdio`` (whose columns they share) so that
``hunt_stdio`` reads them.

At 1 interval of history and again at 10 (the same fleet, grown), it times on each
database the reads of an as-of time T one hour before the last interval:

* ``results --at``: ``storage.results.rows_at`` of a host's ``process_lineage``;
* ``trace --at``: ``columns_at`` of each of the host's detection queries (what
  ``DetectionService.snapshot`` reads);
* ``hunt_processes`` and ``hunt_stdio`` for one host, and counted over the fleet, with
  the as-of predicate the views document;

each with its plan (PostgreSQL: the partitions scanned and how; SQLite: the plan's
table accesses), after VACUUM ANALYZE as autovacuum keeps a live store (``--no-vacuum``:
ANALYZE only; every snapshot rewrites each open row's ``seen_at``, and the dead row
versions that leaves in the open partition slow its reads whatever the partitioning).
Then ``db prune`` of the older half: PostgreSQL's old single DELETE
(timed and rolled back) beside the new drop of whole days, and SQLite's DELETE.

    .venv/bin/python bench/bench_history.py [--hosts 200] [--intervals 10]
        [--backends postgresql,sqlite] [--sample 20] [--no-vacuum]

Timings on a shared machine are noisy: other work on it shows in them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_hosts import CHURN, Host, QueryState, run_lines

from fleetctl.ingest import parse_result_lines
from fleetctl.server.detection_service import DETECTION_QUERIES
from storage import hosts as host_store
from storage import partitions
from storage import results as result_store
from storage.engine import make_engine, make_sessionmaker, session_scope, statements_sent
from storage.migrate import upgrade

PG_ADMIN = os.environ.get("FLEETCTL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
DAY = partitions.DAY
HOUR = 3600
SIM_INTERVAL = 60  # the simulator's churn is one 60 s interval of a real host
PACKS = ("ipc-telemetry", "ipc-telemetry-extension")
# stored name -> (the simulator's query, snapshot)
QUERIES = {
    "pack_ipc-telemetry_process_lineage": ("process_lineage", True),
    "pack_ipc-telemetry-extension_process_stdio": ("stdio_channels", True),
    "pack_ipc-telemetry_pipe_partners": ("pipe_partners", True),
    "pack_ipc-telemetry_unix_sockets": ("unix_sockets", False),
    "pack_ipc-telemetry_unix_listeners": ("unix_listeners", False),
}
LINEAGE = "pack_ipc-telemetry_process_lineage"
AS_OF = "first_seen <= :at AND (removed_at IS NULL OR removed_at > :at)"
PROJECTED_HOSTS = 10_000
PROJECTED_DAYS = 90


class Fleet:
    """The simulated hosts enrolled in one store, with osqueryd's state per query."""

    def __init__(self, engine: Engine, hosts: int, start: int) -> None:
        self.engine = engine
        self.sessions = make_sessionmaker(engine)
        self.hosts = [Host(i, 15, start) for i in range(hosts)]
        self.states = [{name: QueryState() for name in QUERIES} for _ in self.hosts]
        self.ids: list[int] = []
        with session_scope(self.sessions) as session:
            for h in self.hosts:
                host, *_ = host_store.enroll_host(
                    session,
                    host_identifier=h.identifier,
                    platform_type="9",
                    host_details={"system_info": {"uuid": h.uuid}},
                    node_key_hash=uuid.uuid4().hex * 2,
                    now=start,
                )
                self.ids.append(int(host.id))
        self.opened = 0  # rows opened by the intervals after the baseline

    def interval(self, t: int, churn: bool) -> float:
        """Every host's runs at ``t`` (after a churn), applied; seconds taken."""
        began = time.perf_counter()
        with session_scope(self.sessions) as session:
            partitions.ensure_days(session, t)  # what the server keeps as time goes on
        for h, hid, states in zip(self.hosts, self.ids, self.states, strict=True):
            if churn:
                h.churn(t)
            lines: list[Any] = []
            for name, (query, snapshot) in QUERIES.items():
                data, _ = run_lines(h, name, query, "", snapshot, True, states[name], t)
                lines.extend(orjson.loads(d) for d in data)
            runs = parse_result_lines(lines, PACKS).runs
            with session_scope(self.sessions) as session:
                stats = result_store.apply_runs(session, hid, runs, t, PACKS)
            if churn:
                self.opened += stats.opened
        return time.perf_counter() - began


# -- the reads ---------------------------------------------------------------------------


def reads(host_id: int, at: int) -> dict[str, Callable[[Session], Any]]:
    """The as-of reads of one host at ``at``, by what runs them."""

    def trace(session: Session) -> int:
        names = [
            s.name
            for s in result_store.query_names(session, host_id)
            if s.query in DETECTION_QUERIES
        ]
        return sum(len(result_store.columns_at(session, host_id, n, at)) for n in names)

    def view(name: str) -> Callable[[Session], Any]:
        sql = text(f"SELECT * FROM {name} WHERE host_id = :host AND {AS_OF}")
        return lambda s: s.execute(sql, {"host": host_id, "at": at}).all()

    return {
        "results --at": lambda s: result_store.rows_at(s, host_id, LINEAGE, at),
        "trace --at": trace,
        "hunt_processes (host)": view("hunt_processes"),
        "hunt_stdio (host)": view("hunt_stdio"),
    }


def fleet_reads(at: int) -> dict[str, Callable[[Session], Any]]:
    def count(name: str) -> Callable[[Session], Any]:
        sql = text(f"SELECT count(*) FROM {name} WHERE {AS_OF}")
        return lambda s: s.execute(sql, {"at": at}).scalar()

    return {
        "hunt_processes (fleet)": count("hunt_processes"),
        "hunt_stdio (fleet)": count("hunt_stdio"),
    }


def plan(session: Session, read: Callable[[Session], Any]) -> str:
    """How the first statement of ``read`` reaches ``result_rows``, in a few words."""
    sql, params = statements_sent(session, read, naming=("result_rows", "hunt_"))[0]
    dbapi: Any = session.connection().connection.driver_connection
    if session.get_bind().dialect.name == "postgresql":
        return pg_plan(dbapi, sql, params)
    steps = dbapi.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return "; ".join(
        s[-1] for s in steps if {"r", "result_rows"} & set(s[-1].replace("(", " ").split())
    )


def pg_plan(dbapi: Any, sql: str, params: Any) -> str:
    """Partitions scanned (of all), how, and which were read sequentially (with the
    planner's row count: a sequential scan of an empty or tiny partition is cheapest)."""
    doc = dbapi.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
    scans: dict[str, str] = {}
    todo = [doc[0]["Plan"]]
    while todo:
        node = todo.pop()
        todo.extend(node.get("Plans", []))
        rel = node.get("Relation Name", "")
        if rel.startswith(partitions.TABLE):
            scans[rel] = node["Node Type"]
    total = dbapi.execute(
        "SELECT count(*) FROM pg_partition_tree('result_rows') WHERE isleaf"
    ).fetchone()[0]
    kinds = Counter(scans.values())
    estimate = "SELECT reltuples::bigint FROM pg_class WHERE relname = %s"
    seq = [
        f"{rel} ~{dbapi.execute(estimate, (rel,)).fetchone()[0]}"
        for rel, kind in sorted(scans.items())
        if kind == "Seq Scan"
    ]
    said = f"{len(scans)} of {total} partitions: " + ", ".join(
        f"{n} {kind}" for kind, n in sorted(kinds.items())
    )
    return said + (f" (sequential: {', '.join(seq)} rows)" if seq else "")


@dataclass
class Reading:
    ms: dict[str, float] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)
    rows_read: float = 0.0  # per host: lineage rows open or closed after T
    lineage_open: float = 0.0  # per host: lineage rows open


def vacuumed(engine: Engine, statement: str) -> None:
    """Run ``statement`` (VACUUM, ANALYZE) outside any transaction, as VACUUM must be."""
    raw: Any = engine.raw_connection()
    try:
        driver = raw.driver_connection
        if engine.dialect.name == "postgresql":
            driver.autocommit = True
        driver.execute(statement)
    finally:
        raw.close()


def measure(fleet: Fleet, at: int, sample: int, vacuum: bool) -> Reading:
    """The reads at ``at``, after ANALYZE, or with ``vacuum`` after VACUUM ANALYZE as
    autovacuum would have run on a live store: every snapshot rewrites each open row's
    ``seen_at``, and the dead versions left behind slow every read of the open rows."""
    out = Reading()
    per: dict[str, list[float]] = {}
    hosts = fleet.ids[:sample]
    if fleet.engine.dialect.name == "sqlite":
        vacuumed(fleet.engine, "ANALYZE")  # SQLite leaves no dead row versions behind
    else:
        vacuumed(fleet.engine, "VACUUM ANALYZE result_rows" if vacuum else "ANALYZE result_rows")
    with session_scope(fleet.sessions) as session:
        for hid in hosts:
            for what, read in reads(hid, at).items():
                began = time.perf_counter()
                read(session)
                per.setdefault(what, []).append((time.perf_counter() - began) * 1000)
        for what, read in fleet_reads(at).items():
            for _ in range(3):
                began = time.perf_counter()
                read(session)
                per.setdefault(what, []).append((time.perf_counter() - began) * 1000)
        all_reads = {**reads(hosts[0], at), **fleet_reads(at)}
        out.plans = {what: plan(session, read) for what, read in all_reads.items()}
        counted = text(
            "SELECT count(*), count(*) FILTER (WHERE removed_at IS NULL) FROM result_rows"
            " WHERE host_id = :h AND name = :n AND (removed_at IS NULL OR removed_at > :at)"
            if session.get_bind().dialect.name == "postgresql"
            else "SELECT count(*), sum(removed_at IS NULL) FROM result_rows"
            " WHERE host_id = :h AND name = :n AND (removed_at IS NULL OR removed_at > :at)"
        )
        counts = [
            session.execute(counted, {"h": hid, "n": LINEAGE, "at": at}).one() for hid in hosts
        ]
        out.rows_read = statistics.mean(int(c[0]) for c in counts)
        out.lineage_open = statistics.mean(int(c[1] or 0) for c in counts)
    out.ms = {what: statistics.median(v) for what, v in per.items()}
    return out


# -- size and prune ------------------------------------------------------------------------


def stored(engine: Engine) -> tuple[int, int, int]:
    """(rows, bytes of result_rows with its indexes, open rows)."""
    with engine.connect() as conn:
        rows, open_rows = conn.execute(
            text("SELECT count(*), count(*) FILTER (WHERE removed_at IS NULL) FROM result_rows")
            if conn.dialect.name == "postgresql"
            else text("SELECT count(*), sum(removed_at IS NULL) FROM result_rows")
        ).one()
        if conn.dialect.name == "postgresql":
            size = sum(
                conn.execute(
                    text("SELECT pg_total_relation_size(CAST(:t AS regclass))"), {"t": name}
                ).scalar()
                or 0
                for name in partitions.partition_names(conn)
            )
        else:
            size = conn.execute(
                text(
                    "SELECT sum(pgsize) FROM dbstat"
                    " WHERE name = 'result_rows' OR name LIKE 'ix_result_rows%'"
                )
            ).scalar()
    return int(rows), int(size or 0), int(open_rows or 0)


def prune_times(fleet: Fleet, cutoff: int) -> dict[str, Any]:
    """The old single DELETE (rolled back) and ``prune`` (committed), timed."""
    out: dict[str, Any] = {}
    with fleet.engine.connect() as conn:
        tx = conn.begin()
        began = time.perf_counter()
        deleted = conn.execute(
            text("DELETE FROM result_rows WHERE removed_at IS NOT NULL AND removed_at < :c"),
            {"c": cutoff},
        ).rowcount
        out["delete_s"] = time.perf_counter() - began
        out["delete_rows"] = deleted
        tx.rollback()
    with session_scope(fleet.sessions) as session:
        began = time.perf_counter()
        pruned = result_store.prune(session, cutoff)
        session.commit()
        out["prune_s"] = time.perf_counter() - began
    out["pruned"] = pruned
    return out


def compacted(engine: Engine) -> tuple[int, int, int]:
    """``stored`` once the dead row versions are gone: every snapshot rewrites each open
    row's ``seen_at``, and how much of that slack a live store carries depends on its
    vacuuming, so both figures are printed."""
    vacuumed(engine, "VACUUM FULL result_rows" if engine.dialect.name == "postgresql" else "VACUUM")
    return stored(engine)


# -- one backend ------------------------------------------------------------------------


@contextmanager
def store(backend: str) -> Iterator[Engine]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="fleetctl-bench-history-") as tmp:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'fleet.db'}")
            upgrade(engine)
            try:
                yield engine
            finally:
                engine.dispose()
        return
    name = f"fleetctl_bench_history_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(PG_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Result:
    backend: str
    hosts: int
    at: dict[int, Reading] = field(default_factory=dict)
    size: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    compact: tuple[int, int, int] = (0, 0, 0)
    build_s: float = 0.0
    prune: dict[str, Any] = field(default_factory=dict)
    opened_per_host_interval: float = 0.0


def run(backend: str, hosts: int, intervals: int, sample: int, vacuum: bool) -> Result:
    today = partitions.day_of(int(time.time()))
    start = today - intervals * DAY + HOUR  # the last interval falls today
    result = Result(backend, hosts)
    with store(backend) as engine:
        fleet = Fleet(engine, hosts, start)
        result.build_s += fleet.interval(start, churn=False)
        for k in range(1, intervals + 1):
            t = start + k * DAY
            result.build_s += fleet.interval(t, churn=True)
            if k in (1, intervals):
                result.at[k] = measure(fleet, t - HOUR, sample, vacuum)
                result.size[k] = stored(engine)
                print(f"  {backend}: {k} interval(s) of history stored", file=sys.stderr)
        result.opened_per_host_interval = fleet.opened / (hosts * intervals)
        result.compact = compacted(engine)
        cutoff = partitions.day_of(start) + (intervals // 2 + 1) * DAY  # the older half's days
        result.prune = prune_times(fleet, cutoff)
    return result


# -- report ------------------------------------------------------------------------------


def report(results: list[Result], hosts: int, intervals: int) -> None:
    print(f"\nhistory: {hosts} hosts, a baseline then {intervals} intervals one day apart,")
    print(f"{CHURN:.0%} of processes replaced per interval; as-of T = 1 h before the last one")
    for r in results:
        print(f"\n== {r.backend} (history built in {r.build_s:.0f} s)")
        one, many = r.at[1], r.at[intervals]
        print(
            f"{'read':<24}{'1x ms':>10}{f'{intervals}x ms':>10}{'ratio':>8}  plan at {intervals}x"
        )
        for what in one.ms:
            ratio = many.ms[what] / one.ms[what] if one.ms[what] else float("nan")
            print(
                f"{what:<24}{one.ms[what]:>10.2f}{many.ms[what]:>10.2f}{ratio:>8.2f}"
                f"  {many.plans.get(what, '')}"
            )
        for k in (1, intervals):
            rows, size, open_rows = r.size[k]
            print(
                f"stored at {k}x: {rows:,} rows ({open_rows:,} open), {size / 2**20:.1f} MiB"
                f" with indexes, {size / max(rows, 1):.0f} bytes per row"
            )
        rows, size, _ = r.compact
        print(
            f"compacted at {intervals}x (VACUUM FULL / VACUUM): {size / 2**20:.1f} MiB,"
            f" {size / max(rows, 1):.0f} bytes per row"
        )
        p = r.prune
        pruned = p["pruned"]
        print(
            f"prune of the older half: old DELETE {p['delete_s']:.2f} s for {p['delete_rows']:,}"
            f" rows (rolled back); prune {p['prune_s']:.2f} s: {len(pruned.partitions)} day"
            f" partitions dropped (about {pruned.partition_rows:,} rows),"
            f" {pruned.deleted:,} rows deleted"
        )
    project(results, intervals)


def project(results: list[Result], intervals: int) -> None:
    """10,000 hosts kept 90 days, from the measured figures (PostgreSQL's where run).

    A linear model: stored rows are each host's open rows plus the rows its churn closes
    per day, kept ``PROJECTED_DAYS``; an as-of read of a host's lineage reads its open
    rows and those closed since T (an index range on (host_id, name, removed_at) inside
    the partitions after T) at the time per row read measured here; a fleet-wide count
    does that for every host."""
    r = next((x for x in results if x.backend == "postgresql"), results[0])
    open_rows = r.size[intervals][2]
    per_row = r.compact[1] / max(r.compact[0], 1)
    open_per_host = open_rows / r.hosts
    churn_rows = r.opened_per_host_interval  # rows opened (and as many closed) per interval
    per_day = churn_rows * DAY / SIM_INTERVAL
    total_rows = PROJECTED_HOSTS * (open_per_host + PROJECTED_DAYS * per_day)
    print(f"\n== projection: {PROJECTED_HOSTS:,} hosts kept {PROJECTED_DAYS} days ({r.backend})")
    print(
        f"assumes: {open_per_host:,.0f} open rows per host and {churn_rows:,.1f} rows closed"
        f" (and as many opened) per {SIM_INTERVAL} s interval ({CHURN:.0%} of processes"
        f" replaced, as the simulator does), so {per_day:,.0f} closed rows per host per day;"
        f" {per_row:.0f} bytes per row with indexes, compacted (dead row versions come on top)"
    )
    print(
        f"store: {total_rows / 1e9:,.2f} billion rows, {total_rows * per_row / 2**40:,.2f} TiB;"
        f" one day partition {PROJECTED_HOSTS * per_day * per_row / 2**30:,.0f} GiB"
    )
    reading = r.at[intervals]
    lineage_churn = churn_rows * reading.lineage_open / max(open_per_host, 1)
    ms_per_row = reading.ms["results --at"] / max(reading.rows_read, 1)
    fleet_ms_per_row = reading.ms["hunt_processes (fleet)"] / max(reading.rows_read * r.hosts, 1)
    for back, label in ((HOUR, "1 h"), (DAY, "1 day")):
        read = reading.lineage_open + lineage_churn * back / SIM_INTERVAL
        print(
            f"T {label} back: results --at about {ms_per_row * read:,.1f} ms per host"
            f" ({read:,.0f} lineage rows read); hunt_processes over the fleet about"
            f" {fleet_ms_per_row * read * PROJECTED_HOSTS / 1000:,.1f} s; neither grows with"
            f" the {PROJECTED_DAYS} days kept, only with how far back T is"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--sample", type=int, default=20, help="hosts whose reads are timed")
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument(
        "--no-vacuum",
        action="store_true",
        help="measure after ANALYZE only, with the dead row versions the snapshots left",
    )
    args = parser.parse_args()
    results = [
        run(backend, args.hosts, args.intervals, min(args.sample, args.hosts), not args.no_vacuum)
        for backend in args.backends.split(",")
    ]
    report(results, args.hosts, args.intervals)


if __name__ == "__main__":
    main()
