"""A batch is applied in waves of set statements (``storage.results``): on SQLite and
PostgreSQL, a batch of many runs must store exactly what the same runs store one call
at a time, and report the same changes. Random streams of diffs, snapshots split over
lines, baselines, multisets, redeliveries and late runs check it, beside the rules a
batch of several runs of one query must keep."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from fleetctl.ingest import parse_result_lines
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import DataLoss, ResultRow
from storage.results import ApplyStats, apply_runs, rows_at
from storage.runs import Run
from tests.storage.hosts import enrolled_host

NAMES = ("pack_ipc_processes", "pack_ipc_pipes", "pack_ipc_sockets")


def line(name: str, t: int, counter: int, **body: Any) -> dict[str, Any]:
    return {
        "name": name,
        "hostIdentifier": "h",
        "unixTime": t,
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        **body,
    }


def event(name: str, t: int, counter: int, action: str, pid: int) -> dict[str, Any]:
    return line(name, t, counter, columns={"pid": str(pid)}, action=action)


def snapshot(name: str, t: int, pids: list[int]) -> dict[str, Any]:
    rows = [{"pid": str(p)} for p in pids]
    return line(name, t, 0, snapshot=rows, action="snapshot")


class Stream:
    """One query's osqueryd: a multiset of rows, logged as diffs, snapshots (sometimes
    split over lines) and baselines; some runs are logged again or late."""

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name, self.rng = name, rng
        self.rows: Counter[int] = Counter()
        self.counter = -1
        self.sent: list[list[dict[str, Any]]] = []

    def run(self, t: int) -> list[dict[str, Any]]:
        rng, name = self.rng, self.name
        kind = rng.choice(["diff"] * 5 + ["snapshot", "split", "baseline", "again"])
        if kind == "again" and self.sent:
            return rng.choice(self.sent)  # a redelivered (older) run
        before = Counter(self.rows)
        for pid in list(self.rows):
            if rng.random() < 0.3:
                self.rows[pid] -= rng.randint(1, self.rows[pid])
        for _ in range(rng.randint(0, 4)):
            self.rows[rng.randint(1, 12)] += rng.choice((1, 1, 1, 2))
        self.rows = +self.rows
        current = sorted(self.rows.elements())
        if kind in ("snapshot", "split"):
            cut = rng.randint(0, len(current)) if kind == "split" else len(current)
            parts = [current[:cut], current[cut:]] if kind == "split" else [current]
            return [snapshot(name, t, part) for part in parts]
        if kind == "baseline" or self.counter < 0:
            self.counter = 0
            return [event(name, t, 0, "added", p) for p in current]
        self.counter += 1
        gone = sorted((before - self.rows).elements())
        new = sorted((self.rows - before).elements())
        lines = [event(name, t, self.counter, "removed", p) for p in gone]
        lines += [event(name, t, self.counter, "added", p) for p in new]
        if not lines:
            self.counter -= 1
            return []
        self.sent.append(lines)
        return lines


def random_batches(seed: int) -> list[list[dict[str, Any]]]:
    """Posts of consecutive lines from three streams; runs are sometimes swapped (a late
    run) and posts cut anywhere, splitting runs across posts."""
    rng = random.Random(seed)
    streams = [Stream(name, rng) for name in NAMES]
    runs: list[list[dict[str, Any]]] = []
    for step in range(40):
        t = 1000 + 10 * step
        for stream in rng.sample(streams, k=rng.randint(1, 3)):
            found = stream.run(t)
            if found:
                runs.append(found)
    for i in range(len(runs) - 1):
        if rng.random() < 0.1:
            runs[i], runs[i + 1] = runs[i + 1], runs[i]
    lines = [ln for run in runs for ln in run]
    batches = []
    while lines:
        n = rng.randint(1, 25)
        batches.append(lines[:n])
        lines = lines[n:]
    return batches


@pytest.fixture
def hosts(db_url: str) -> Iterator[tuple[Any, int, int]]:
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        batched = enrolled_host(session, "batched", "u1")
        alone = enrolled_host(session, "alone", "u2", "a" * 64)
    yield factory, batched, alone
    engine.dispose()


def changes(stats: ApplyStats) -> list[tuple[Any, ...]]:
    return [
        (
            a.name,
            sorted(repr((r.hash, r.first_seen, sorted(r.columns.items()))) for r in a.opened),
            sorted(repr((r.hash, r.first_seen, sorted(r.columns.items()))) for r in a.closed),
            a.full_state,
            a.baseline,
        )
        for a in stats.applied
    ]


def totals(stats: ApplyStats) -> tuple[Any, ...]:
    return (stats.runs, stats.skipped_runs, stats.opened, stats.closed, stats.markers)


def stored(session: Any, host_id: int) -> tuple[list[Any], list[Any]]:
    r = ResultRow
    rows = session.execute(
        select(r.name, r.row_hash, r.copies, r.first_seen, r.removed_at, r.seen_at).where(
            r.host_id == host_id
        )
    )
    m = DataLoss
    markers = session.execute(
        select(m.name, m.kind, m.first_missing, m.last_missing, m.resolved_at.is_(None))
        .where(m.host_id == host_id)
        .order_by(m.id)
    )
    return sorted((tuple(x) for x in rows), key=repr), [tuple(x) for x in markers]


@pytest.mark.parametrize("seed", range(6))
def test_a_batch_stores_and_reports_what_its_runs_do_one_at_a_time(
    hosts: tuple[Any, int, int], seed: int
) -> None:
    factory, batched, alone = hosts
    collect = lambda query: query != "sockets"  # noqa: E731 - one query not collected
    for lines in random_batches(seed):
        runs = parse_result_lines(lines).runs
        with session_scope(factory) as session:
            together = apply_runs(session, batched, runs, 5, collect=collect)
        one_by_one = ApplyStats()
        for run in runs:
            with session_scope(factory) as session:
                one_by_one.add(apply_runs(session, alone, [run], 5, collect=collect))
        assert changes(together) == changes(one_by_one)
        assert totals(together) == totals(one_by_one)
        with session_scope(factory) as session:
            assert stored(session, batched) == stored(session, alone)


def pids_at(factory: Any, host_id: int, t: int, name: str = NAMES[0]) -> list[str]:
    with session_scope(factory) as session:
        return sorted(r.columns["pid"] for r in rows_at(session, host_id, name, t))


def test_several_runs_of_one_query_in_one_batch_keep_their_order(
    hosts: tuple[Any, int, int],
) -> None:
    factory, host, _ = hosts
    name = NAMES[0]
    lines = [
        event(name, 100, 0, "added", 1),
        event(name, 100, 0, "added", 2),
        event(name, 110, 1, "removed", 1),
        event(name, 110, 1, "added", 3),
        event(name, 120, 2, "removed", 3),
        event(name, 120, 2, "added", 1),
        snapshot(name, 130, [1, 4]),
    ]
    with session_scope(factory) as session:
        stats = apply_runs(session, host, parse_result_lines(lines).runs, 5, collect=bool)
    assert [
        ({r.columns["pid"] for r in a.opened}, {r.columns["pid"] for r in a.closed})
        for a in stats.applied
    ] == [({"1", "2"}, set()), ({"3"}, {"1"}), ({"1"}, {"3"}), ({"4"}, {"2"})]
    assert pids_at(factory, host, 105) == ["1", "2"]
    assert pids_at(factory, host, 115) == ["2", "3"]
    assert pids_at(factory, host, 125) == ["1", "2"]
    assert pids_at(factory, host, 135) == ["1", "4"]


def test_a_snapshot_split_over_lines_of_one_batch_reopens_what_its_first_part_closed(
    hosts: tuple[Any, int, int],
) -> None:
    factory, host, _ = hosts
    name = NAMES[0]
    batch = [snapshot(name, 100, [1, 2, 3])]
    split = [snapshot(name, 200, [1]), snapshot(name, 200, [2, 2])]
    with session_scope(factory) as session:
        apply_runs(session, host, parse_result_lines(batch).runs, 5)
    with session_scope(factory) as session:
        stats = apply_runs(session, host, parse_result_lines(split).runs, 5, collect=bool)
    # The first part closed 2 and 3; the second reopened 2, which counts as unchanged.
    assert [len(a.opened) for a in stats.applied] == [0, 1]
    assert [len(a.closed) for a in stats.applied] == [2, 0]
    with session_scope(factory) as session:
        rows = session.execute(
            select(ResultRow.columns, ResultRow.copies, ResultRow.removed_at).where(
                ResultRow.host_id == host
            )
        ).all()
    assert sorted((c["pid"], n, gone) for c, n, gone in rows) == [
        ("1", 1, None),
        ("2", 2, None),
        ("3", 1, 200),
    ]


def test_older_runs_delivered_again_in_a_batch_change_nothing(
    hosts: tuple[Any, int, int],
) -> None:
    factory, host, _ = hosts
    lines = [
        event(NAMES[0], 100, 0, "added", 1),
        event(NAMES[1], 100, 0, "added", 7),
        event(NAMES[0], 110, 1, "removed", 1),
        event(NAMES[0], 110, 1, "added", 2),
        event(NAMES[1], 110, 1, "added", 8),
        event(NAMES[0], 120, 2, "added", 3),
        event(NAMES[1], 120, 2, "removed", 7),
    ]
    runs: list[Run] = parse_result_lines(lines).runs
    with session_scope(factory) as session:
        apply_runs(session, host, runs, 5)
    with session_scope(factory) as session:
        before = stored(session, host)
    with session_scope(factory) as session:
        again = apply_runs(session, host, parse_result_lines(lines[2:5]).runs, 5)
    assert (again.runs, again.skipped_runs) == (0, 2)
    with session_scope(factory) as session:
        assert stored(session, host) == before
