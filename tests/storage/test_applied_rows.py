"""What ``apply_runs`` tells its caller changed, on SQLite and PostgreSQL: the rows that
opened and closed per run, for differential and full-state runs, only for the queries
asked for, and that they move a copy of the open rows to what the store has."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fleetctl.ingest import parse_result_lines
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.results import ApplyStats, apply_runs, open_rows
from tests.storage.hosts import enrolled_host

NAME = "pack_ipc_processes"


@pytest.fixture
def apply(db_url: str) -> Iterator[Any]:
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        host_id = enrolled_host(session)

    def run(lines: list[dict[str, Any]], collect: Any = lambda q: True) -> ApplyStats:
        with session_scope(factory) as session:
            return apply_runs(
                session, host_id, parse_result_lines(lines).runs, 10_000, collect=collect
            )

    def current() -> dict[str, dict[str, str]]:
        with session_scope(factory) as session:
            return {r.hash: dict(r.columns) for r in open_rows(session, host_id, NAME)}

    run.current = current  # type: ignore[attr-defined]
    yield run
    engine.dispose()


def diff(action: str, pid: int, t: int, counter: int, name: str = NAME) -> dict[str, Any]:
    return {
        "name": name,
        "hostIdentifier": "h1",
        "unixTime": t,
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        "columns": {"pid": str(pid)},
        "action": action,
    }


def snapshot(pids: list[int], t: int) -> dict[str, Any]:
    return {
        "name": NAME,
        "hostIdentifier": "h1",
        "unixTime": t,
        "epoch": 0,
        "counter": 0,
        "numerics": False,
        "action": "snapshot",
        "snapshot": [{"pid": str(p)} for p in pids],
    }


def pids(rows: Any) -> set[str]:
    return {r.columns["pid"] for r in rows}


def test_diffs_and_snapshots_report_what_opened_and_closed(apply: Any) -> None:
    first = apply([diff("added", 1, 100, 0), diff("added", 2, 100, 0)]).applied
    assert [(pids(a.opened), pids(a.closed), a.full_state, a.baseline) for a in first] == [
        ({"1", "2"}, set(), True, True)
    ]
    assert first[0].query == "processes" and first[0].opened[0].first_seen == 100
    second = apply([diff("removed", 1, 200, 1), diff("added", 3, 200, 1)]).applied
    assert [(pids(a.opened), pids(a.closed), a.full_state) for a in second] == [
        ({"3"}, {"1"}, False)
    ]
    # A snapshot carries everything; only its real change is reported.
    third = apply([snapshot([2, 3, 4], 300)]).applied
    assert [(pids(a.opened), pids(a.closed), a.full_state, a.baseline) for a in third] == [
        ({"4"}, set(), True, False)
    ]
    fourth = apply([snapshot([3, 4], 400)]).applied
    assert [(pids(a.opened), pids(a.closed)) for a in fourth] == [(set(), {"2"})]


def test_the_changes_move_a_copy_of_the_open_rows_to_the_store(apply: Any) -> None:
    mine: dict[str, dict[str, str]] = {}
    batches = [
        [diff("added", 1, 100, 0), diff("added", 2, 100, 0)],
        [diff("removed", 2, 150, 1), diff("added", 2, 150, 1), diff("added", 5, 150, 1)],
        [snapshot([1, 5, 6], 200)],
        [diff("removed", 5, 250, 2)],
        [snapshot([6, 7], 300)],
    ]
    for lines in batches:
        for applied in apply(lines).applied:
            for row in applied.closed:
                mine.pop(row.hash, None)
            for row in applied.opened:
                mine[row.hash] = dict(row.columns)
        assert mine == apply.current()


def test_only_the_queries_asked_for_are_collected(apply: Any) -> None:
    stats = apply([diff("added", 1, 100, 0)], collect=lambda query: query == "lineage")
    assert stats.applied == [] and stats.opened == 1
