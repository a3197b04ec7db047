"""The differential engine's epoch and counter rules and the lines it produces."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetctl.agent import differ
from fleetctl.agent.logformat import Header, calendar_time, diff_lines, snapshot_lines
from fleetctl.agent.state import StateDB


@pytest.fixture
def state(tmp_path: Path) -> StateDB:
    return StateDB(tmp_path)


def run(
    state: StateDB,
    rows: list[dict[str, object]],
    *,
    name: str = "q",
    sql: str = "SELECT",
    epoch: int = 0,
) -> differ.DiffOutcome:
    with state.transaction() as conn:
        return differ.apply(conn, name, sql, epoch, rows, now=1000)


def test_counter_zero_baseline_then_one_per_changing_run(state: StateDB) -> None:
    first = run(state, [{"a": 1}, {"a": 2}])
    assert (first.counter, first.new_epoch, first.added, first.removed) == (
        0,
        True,
        [{"a": 1}, {"a": 2}],
        [],
    )
    same = run(state, [{"a": 2}, {"a": 1}])
    assert (same.counter, same.added, same.removed) == (0, [], [])
    changed = run(state, [{"a": 2}, {"a": 3}])
    assert (changed.counter, changed.added, changed.removed) == (1, [{"a": 3}], [{"a": 1}])
    assert run(state, [{"a": 2}, {"a": 3}]).counter == 1


def test_rows_are_a_multiset(state: StateDB) -> None:
    run(state, [{"a": "x"}, {"a": "x"}])
    outcome = run(state, [{"a": "x"}])
    assert (outcome.added, outcome.removed, outcome.counter) == ([], [{"a": "x"}], 1)


def test_new_epoch_restarts_at_zero_and_sql_change_does_not(state: StateDB) -> None:
    run(state, [{"a": 1}])
    run(state, [{"a": 2}])
    edited = run(state, [{"a": 3}], sql="SELECT changed")
    assert (edited.counter, edited.new_epoch, edited.removed) == (2, False, [{"a": 2}])
    bumped = run(state, [{"a": 3}], sql="SELECT changed", epoch=7)
    assert (bumped.counter, bumped.new_epoch, bumped.added) == (0, True, [{"a": 3}])


def test_empty_baseline_then_first_rows_count_one(state: StateDB) -> None:
    assert run(state, []).counter == 0
    assert run(state, [{"a": 1}]).counter == 1


def test_event_queries_are_not_diffed_and_start_at_one(state: StateDB) -> None:
    sql = "SELECT * FROM process_events"
    assert run(state, [{"e": 1}], sql=sql).counter == 1
    again = run(state, [{"e": 1}], sql=sql)
    assert (again.counter, again.added) == (2, [{"e": 1}])
    assert run(state, [], sql=sql).counter == 2


def test_nulls_and_numbers_compare_as_osquery_strings(state: StateDB) -> None:
    run(state, [{"a": None, "b": 1}])
    assert run(state, [{"a": "", "b": "1"}]).counter == 0


def test_state_outlives_the_process(tmp_path: Path) -> None:
    first = StateDB(tmp_path)
    run(first, [{"a": 1}])
    first.close()
    assert run(StateDB(tmp_path), [{"a": 1}, {"a": 2}]).counter == 1


def test_purge_forgets_names_unscheduled_for_a_week(state: StateDB) -> None:
    run(state, [{"a": 1}], name="kept")
    run(state, [{"a": 1}], name="gone")
    with state.transaction() as conn:
        assert differ.mark_scheduled(conn, ["kept"], 1000 + differ.PURGE_SECONDS) == 0
        assert differ.mark_scheduled(conn, ["kept"], 1001 + differ.PURGE_SECONDS) == 1
    assert run(state, [{"a": 1}], name="gone").new_epoch


def test_event_format_lines_removed_first_with_common_keys() -> None:
    header = Header("q", "host", 1411407450, 3, 5, decorations={"hostname": "h"})
    lines = diff_lines(header, [{"b": 2, "a": None}], [{"a": "x", "b": 1}], True)
    assert [line["action"] for line in lines] == ["removed", "added"]
    assert lines[1] == {
        "name": "q",
        "hostIdentifier": "host",
        "calendarTime": "Mon Sep 22 17:37:30 2014 UTC",
        "unixTime": 1411407450,
        "epoch": 3,
        "counter": 5,
        "numerics": False,
        "decorations": {"hostname": "h"},
        "columns": {"a": "", "b": "2"},
        "action": "added",
    }
    assert diff_lines(header, [], [], True) == []


def test_batch_snapshot_numerics_and_top_level_decorations() -> None:
    header = Header(
        "q", "host", 0, 0, 0, numerics=True, decorations={"d": "1"}, decorations_top_level=True
    )
    (batch,) = diff_lines(header, [{"n": 1}], [], False)
    assert batch["diffResults"] == {"removed": [], "added": [{"n": 1}]} and batch["d"] == "1"
    (empty,) = diff_lines(header, [], [], False, baseline=True)  # an empty batch baseline
    assert empty["diffResults"] == {"removed": [], "added": []}
    assert diff_lines(header, [], [], True, baseline=True) == []  # invisible as events
    (snap,) = snapshot_lines(header, [], False)
    assert snap["snapshot"] == [] and snap["action"] == "snapshot"
    assert snapshot_lines(header, [{"n": 1}], True)[0]["action"] == "snapshot"
    assert calendar_time(0) == "Thu Jan  1 00:00:00 1970 UTC"
