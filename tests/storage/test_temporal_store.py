"""The temporal result store, on SQLite and PostgreSQL: baselines, diffs, snapshots,
redelivery, gaps, out-of-order runs, multisets and retention."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from fleetctl.ingest import parse_result_lines
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import DataLoss, ResultRow
from storage.results import apply_runs, prune, rows_at
from tests.storage.hosts import enrolled_host

NAME = "pack_ipc_processes"


@pytest.fixture
def store(db_url: str) -> Iterator[Any]:
    engine = make_engine(db_url)
    factory = make_sessionmaker(engine)
    sessions = factory
    with session_scope(factory) as session:
        host_id = enrolled_host(session)
    hid = host_id

    class Store:
        factory = sessions
        host_id = hid

        def apply(self, lines: list[dict[str, Any]], now: int = 10_000) -> Any:
            with session_scope(factory) as session:
                return apply_runs(session, host_id, parse_result_lines(lines).runs, now)

        def at(self, t: int, name: str = NAME) -> set[str]:
            with session_scope(factory) as session:
                return {r.columns["pid"] for r in rows_at(session, host_id, name, t)}

        def markers(self) -> list[tuple[str, int | None, int | None, bool]]:
            with session_scope(factory) as session:
                return [
                    (m.kind, m.first_missing, m.last_missing, m.resolved_at is not None)
                    for m in session.scalars(select(DataLoss).order_by(DataLoss.id))
                ]

        def session(self) -> Session:
            return factory()

    yield Store()
    engine.dispose()


def ev(
    action: str,
    pid: int,
    t: int,
    counter: int,
    *,
    name: str = NAME,
    epoch: int = 0,
    numerics: bool = False,
) -> dict[str, Any]:
    value: Any = pid if numerics else str(pid)
    return {
        "name": name,
        "hostIdentifier": "h1",
        "calendarTime": "x",
        "unixTime": t,
        "epoch": epoch,
        "counter": counter,
        "numerics": numerics,
        "columns": {"pid": value, "name": f"p{pid}"},
        "action": action,
    }


def test_baseline_then_diffs_give_row_lifetimes(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0), ev("added", 2, 100, 0)])
    store.apply([ev("removed", 1, 200, 1), ev("added", 3, 200, 1)])
    assert store.at(99) == set()
    assert store.at(100) == {"1", "2"}
    assert store.at(199) == {"1", "2"}
    assert store.at(200) == {"2", "3"}
    assert store.markers() == []


def test_an_older_run_delivered_again_changes_nothing(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0), ev("added", 2, 100, 0)])
    second = [ev("removed", 1, 200, 1), ev("added", 3, 200, 1)]
    store.apply(second)
    store.apply([ev("added", 4, 300, 2)])
    stats = store.apply(second)
    assert stats.skipped_runs == 1 and stats.runs == 0
    with store.session() as s:
        assert s.query(ResultRow).count() == 4
    assert store.at(300) == {"2", "3", "4"}


def test_a_diff_run_split_across_posts_is_applied_whole(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0), ev("added", 2, 100, 0)])
    store.apply([ev("removed", 1, 200, 1), ev("added", 3, 200, 1)])
    store.apply([ev("added", 4, 200, 1)])  # the rest of run 1, in the next post
    assert store.at(200) == {"2", "3", "4"}
    assert store.markers() == []


def test_counter_zero_rebaseline_closes_rows_absent_from_it(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0), ev("added", 2, 100, 0)])
    store.apply([ev("added", 3, 200, 1)])
    # osquery lost its database: a fresh baseline without 1 and 3.
    store.apply([ev("added", 2, 300, 0), ev("added", 4, 300, 0)])
    assert store.at(299) == {"1", "2", "3"}
    assert store.at(300) == {"2", "4"}
    assert [m[0] for m in store.markers()] == ["rebaseline"]
    # The stream restarted at 0: counter 1 is accepted, not a redelivery.
    store.apply([ev("added", 5, 400, 1)])
    assert store.at(400) == {"2", "4", "5"}


def test_snapshot_is_diffed_against_open_rows(store: Any) -> None:
    def snap(t: int, pids: list[int]) -> dict[str, Any]:
        return {
            "name": "snap",
            "hostIdentifier": "h1",
            "unixTime": t,
            "epoch": 0,
            "counter": 0,
            "numerics": False,
            "action": "snapshot",
            "snapshot": [{"pid": str(p)} for p in pids],
        }

    store.apply([snap(100, [1, 2])])
    store.apply([snap(200, [2, 3])])
    assert store.at(150, "snap") == {"1", "2"}
    assert store.at(200, "snap") == {"2", "3"}
    with store.session() as s:
        pid2 = s.scalars(select(ResultRow).where(ResultRow.name == "snap")).all()
        assert sorted((r.columns["pid"], r.first_seen, r.removed_at) for r in pid2) == [
            ("1", 100, 200),
            ("2", 100, None),
            ("3", 200, None),
        ]


def test_snapshot_rows_one_per_line_split_across_posts(store: Any) -> None:
    """A full-state run cut in two by the 1,024-line limit must not lose rows."""

    def row(t: int, pid: int) -> dict[str, Any]:
        return {
            "name": "snap",
            "unixTime": t,
            "epoch": 0,
            "counter": 0,
            "columns": {"pid": str(pid)},
            "action": "snapshot",
        }

    store.apply([row(100, 1), row(100, 2), row(100, 3)])
    store.apply([row(200, 1)])
    store.apply([row(200, 2)])  # second half of the same run
    assert store.at(200, "snap") == {"1", "2"}
    with store.session() as s:
        rows = s.scalars(select(ResultRow).where(ResultRow.name == "snap")).all()
        assert sorted((r.columns["pid"], r.first_seen, r.removed_at) for r in rows) == [
            ("1", 100, None),
            ("2", 100, None),
            ("3", 100, 200),
        ]


def test_counter_gap_is_marked_and_filled_by_a_late_run(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0)])
    store.apply([ev("added", 2, 200, 1)])
    store.apply([ev("removed", 2, 400, 3), ev("added", 4, 400, 3)])  # 2 is missing
    assert store.markers() == [("counter_gap", 2, 2, False)]
    store.apply([ev("added", 3, 300, 2)])  # arrives late
    assert store.markers() == [("counter_gap", 2, 2, True)]
    assert store.at(350) == {"1", "2", "3"}
    assert store.at(400) == {"1", "3", "4"}


def test_out_of_order_removal_before_addition(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0)])
    store.apply([ev("removed", 7, 300, 2)])  # counter 1 (which added 7) is late
    store.apply([ev("added", 7, 200, 1)])
    assert store.at(250) == {"1", "7"}
    assert store.at(300) == {"1"}
    assert store.markers() == [("counter_gap", 1, 1, True)]


def test_numerics_true_and_false_are_the_same_row(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0, numerics=True)])
    store.apply([ev("removed", 1, 200, 1, numerics=False)])
    assert store.at(150) == {"1"}
    assert store.at(200) == set()


def test_multiset_rows_close_when_the_last_copy_goes(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0), ev("added", 1, 100, 0)])
    store.apply([ev("removed", 1, 200, 1)])
    assert store.at(200) == {"1"}
    store.apply([ev("removed", 1, 300, 2)])
    assert store.at(300) == set()


def test_epoch_change_is_marked(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0)])
    store.apply([ev("added", 2, 200, 0, epoch=7)])
    assert [m[0] for m in store.markers()] == ["epoch_change"]
    assert store.at(200) == {"2"}


def test_counter_zero_diffs_of_older_osquery(store: Any) -> None:
    """Some osquery versions log diffs at counter 0 (the msticpy fixture shows it):
    once a counter-0 run removes rows, counter 0 no longer means baseline."""
    store.apply([ev("removed", 9, 100, 0), ev("added", 1, 100, 0)])
    store.apply([ev("added", 2, 200, 0)])
    assert store.at(200) == {"1", "2"}
    assert store.markers() == []


def test_prune_removes_only_rows_closed_before_the_cutoff(store: Any) -> None:
    store.apply([ev("added", 1, 100, 0), ev("added", 2, 100, 0)])
    store.apply([ev("removed", 1, 200, 1)])
    with store.session() as s, s.begin():
        assert prune(s, older_than=150).rows == 0
        assert prune(s, older_than=201).rows == 1
    assert store.at(10_000) == {"2"}
    assert store.at(150) == {"2"}


def test_removed_false_queries_may_skip_counters_without_a_marker(store: Any) -> None:
    """With ``removed: false`` osqueryd logs nothing for a removal-only run, yet the counter
    moves on: that jump is not data loss."""
    with session_scope(store.factory) as session:
        apply_runs(session, store.host_id, parse_result_lines([ev("added", 1, 100, 0)]).runs, 1)
        apply_runs(
            session,
            store.host_id,
            parse_result_lines([ev("added", 2, 300, 2)]).runs,
            1,
            silent_counters={NAME},
        )
    assert store.markers() == []
    assert store.at(300) == {"1", "2"}
