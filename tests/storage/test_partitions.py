"""Result history partitioned by day on PostgreSQL (``storage.partitions``): closed rows
land in their day, late ones get theirs when the server keeps the partitions, ``prune``
drops whole days, and the as-of reads of ``results --at``, ``trace --at`` and the
hunting views scan only the partitions after the time asked, through indexes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from fleetctl.ingest import parse_result_lines
from storage import partitions
from storage.engine import make_engine, make_sessionmaker, session_scope, statements_sent
from storage.results import apply_runs, columns_at, prune, rows_at
from tests.conftest import _truncate_pg
from tests.storage.hosts import enrolled_host

NAME = "pack_ipc-telemetry_process_lineage"
DAY = partitions.DAY
TODAY = partitions.day_of(int(time.time()))
PAST_DAYS = 10


def line(action: str, pid: int, t: int, counter: int) -> dict[str, Any]:
    return {
        "name": NAME,
        "hostIdentifier": "h1",
        "unixTime": t,
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        "columns": {"pid": str(pid), "name": f"p{pid}", "parent": "1"},
        "action": action,
    }


class History:
    """A PostgreSQL store whose host ran process ``k`` from ``PAST_DAYS`` days ago until
    day ``-k`` (noon), for k = 1..PAST_DAYS; processes 100 and 101 still run."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.factory = make_sessionmaker(self.engine)
        with session_scope(self.factory) as session:
            self.host_id = enrolled_host(session)
        start = TODAY - PAST_DAYS * DAY
        first = [line("added", k, start, 0) for k in (*range(1, PAST_DAYS + 1), 100, 101)]
        self.apply(first)
        for counter, k in enumerate(range(PAST_DAYS, 0, -1), start=1):
            self.apply([line("removed", k, self.closed_at(k), counter)])

    @staticmethod
    def closed_at(k: int) -> int:
        return TODAY - k * DAY + DAY // 2

    def apply(self, lines: list[dict[str, Any]]) -> None:
        with session_scope(self.factory) as session:
            apply_runs(session, self.host_id, parse_result_lines(lines).runs, int(time.time()))

    def where(self) -> dict[str, str]:
        """pid -> the partition holding its row."""
        with session_scope(self.factory) as session:
            rows = session.execute(
                text("SELECT columns ->> 'pid', tableoid::regclass::text FROM result_rows")
            )
            return {pid: part for pid, part in rows}

    def present(self, at: int) -> set[str]:
        with session_scope(self.factory) as session:
            return {r.columns["pid"] for r in rows_at(session, self.host_id, NAME, at)}


@pytest.fixture
def history(pg_database: str) -> Iterator[History]:
    _truncate_pg(pg_database)
    with session_scope(make_sessionmaker(make_engine(pg_database))) as session:
        # The database is shared with other tests, whose history may have made days of
        # their own: start from no day at all, then what the server keeps.
        partitions.prune_days(session, partitions.day_of(int(time.time())) + 365 * DAY)
        partitions.ensure_days(session)
    made = History(pg_database)
    yield made
    made.engine.dispose()


def test_closed_rows_land_in_their_day_and_late_ones_get_theirs(history: History) -> None:
    before = {k: history.present(history.closed_at(k) - 1) for k in range(1, PAST_DAYS + 1)}
    where = history.where()
    assert where["100"] == where["101"] == partitions.OPEN
    assert where["1"] == partitions.day_name(TODAY - DAY)  # the server made yesterday's
    assert where[str(PAST_DAYS)] == partitions.OTHER  # before the store had that day

    with session_scope(history.factory) as session:
        ensured = partitions.ensure_days(session)
    assert ensured.moved == PAST_DAYS - 1
    assert sorted(ensured.created) == sorted(
        partitions.day_name(TODAY - k * DAY) for k in range(2, PAST_DAYS + 1)
    )
    where = history.where()
    for k in range(1, PAST_DAYS + 1):
        assert where[str(k)] == partitions.day_name(TODAY - k * DAY)
    assert where["100"] == partitions.OPEN
    after = {k: history.present(history.closed_at(k) - 1) for k in range(1, PAST_DAYS + 1)}
    assert after == before
    assert history.present(history.closed_at(3)) == {"1", "2", "100", "101"}


def test_prune_drops_whole_days_and_deletes_the_rest(history: History) -> None:
    with session_scope(history.factory) as session:
        partitions.ensure_days(session)
    # A removal whose addition never came, at a time no day partition covers.
    history.apply([line("removed", 7777, 500, PAST_DAYS + 1)])
    cutoff = TODAY - 3 * DAY + 1  # inside day -3, before its row closed at noon
    older = [partitions.day_name(TODAY - k * DAY) for k in range(PAST_DAYS, 3, -1)]

    with session_scope(history.factory) as session:
        dry = prune(session, cutoff, dry_run=True)
    assert dry.partitions == tuple(older)
    assert (dry.partition_rows, dry.deleted) == (PAST_DAYS - 3, 1)
    assert len(history.where()) == PAST_DAYS + 3  # nothing went

    with session_scope(history.factory) as session:
        done = prune(session, cutoff)
        left = {p.name for p in partitions.day_partitions(session)}
    assert done == dry
    assert not left & set(older)
    assert set(history.where()) == {"1", "2", "3", "100", "101"}
    with session_scope(history.factory) as session:
        again = prune(session, cutoff)
    assert (again.partitions, again.rows) == ((), 0)


def plan_of(session: Session, sql: str, params: Any) -> list[dict[str, Any]]:
    """Every node of the plan PostgreSQL makes for ``sql`` (in the driver's own
    placeholders, as a read sent it), flattened."""
    driver = session.connection().connection.driver_connection
    plan = driver.execute(f"EXPLAIN (FORMAT JSON) {sql}", params).fetchone()[0]
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


def scanned(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """Partition of ``result_rows`` -> how the plan reads it."""
    return {
        n["Relation Name"]: n["Node Type"]
        for n in nodes
        if n.get("Relation Name", "").startswith(partitions.TABLE)
    }


def as_of_plans(session: Session, host_id: int, at: int) -> dict[str, dict[str, str]]:
    """How each as-of read scans ``result_rows`` at ``at``: the reads ``results --at``
    and ``trace --at`` run, and the hunting views as their docs say to ask them."""
    reads = {
        "results --at": lambda s: rows_at(s, host_id, NAME, at),
        "trace --at": lambda s: columns_at(s, host_id, NAME, at),
    }
    plans = {}
    for what, read in reads.items():
        ((sql, params),) = statements_sent(session, read, naming=("result_rows",))
        plans[what] = scanned(plan_of(session, sql, params))
    asked = "first_seen <= %(at)s AND (removed_at IS NULL OR removed_at > %(at)s)"
    for view in ("hunt_processes", "hunt_stdio"):
        sql = f"SELECT * FROM {view} WHERE host_id = %(host)s AND {asked}"
        plans[view] = scanned(plan_of(session, sql, {"at": at, "host": host_id}))
        fleet = f"SELECT count(*) FROM {view} WHERE {asked}"
        plans[f"{view} (fleet)"] = scanned(plan_of(session, fleet, {"at": at}))
    return plans


@pytest.mark.parametrize("days_back", [1, PAST_DAYS - 1])
def test_as_of_reads_are_index_scans_of_the_days_after_the_time(
    history: History, days_back: int
) -> None:
    """Whatever the history kept, an as-of read at T scans the open rows, closed_other
    and the days from T on, each through an index, never a sequential scan of all."""
    with session_scope(history.factory) as session:
        partitions.ensure_days(session)
        session.execute(text("ANALYZE result_rows"))
    at = TODAY - days_back * DAY + 3600
    with session_scope(history.factory) as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))  # tiny tables: see the index
        plans = as_of_plans(session, history.host_id, at)
        days = partitions.day_partitions(session)
    needed = {partitions.OPEN, partitions.OTHER} | {p.name for p in days if p.end > at}
    assert len(days) >= PAST_DAYS + partitions.AHEAD_DAYS
    for what, scans in plans.items():
        assert set(scans) == needed, what
        assert "Seq Scan" not in scans.values(), (what, scans)
    present = {str(k) for k in range(1, days_back + 1)} | {"100", "101"}
    assert history.present(at) == present
