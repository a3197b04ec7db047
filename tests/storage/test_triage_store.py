"""The bounded reads a finding's triage makes, on SQLite and PostgreSQL: rows by a JSON
column over a time window, starts of a parent/child pair by name (LIKE wildcards in a
name are literal), how far history reaches, and the data-loss markers of a window."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fleetctl.ingest import parse_result_lines
from storage import triage as triage_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.results import apply_runs
from tests.storage.hosts import enrolled_host

LINEAGE = "pack_ipc-telemetry_process_lineage"


def snapshot(rows: list[dict[str, str]], at: int) -> dict[str, Any]:
    return {
        "name": LINEAGE,
        "hostIdentifier": "h1",
        "unixTime": at,
        "epoch": 0,
        "counter": 0,
        "numerics": False,
        "action": "snapshot",
        "snapshot": rows,
    }


def row(pid: int, path: str, parent_path: str, start: int) -> dict[str, str]:
    return {
        "pid": str(pid),
        "parent": "1",
        "start_time": str(start),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "cmdline": path,
        "parent_name": parent_path.rsplit("/", 1)[-1],
        "parent_path": parent_path,
    }


@pytest.fixture
def store(db_url: str) -> Iterator[tuple[Any, int]]:
    factory = make_sessionmaker(make_engine(db_url))
    with session_scope(factory) as session:
        host_id = enrolled_host(session)
    lines = [
        # 100-200: a tool with "_" in its name under cron, and a look-alike name
        snapshot([row(10, "/usr/bin/my_tool", "/usr/sbin/cron", 90)], 100),
        snapshot([row(11, "/usr/bin/myXtool", "/usr/sbin/cron", 150)], 200),
        snapshot([row(12, "/usr/bin/my_tool", "/usr/sbin/cron", 250)], 300),
    ]
    with session_scope(factory) as session:
        apply_runs(session, host_id, parse_result_lines(lines).runs, 400)
    yield factory, host_id


def test_rows_by_column_over_a_window(store: tuple[Any, int]) -> None:
    factory, host_id = store
    with session_scope(factory) as session:

        def pids(start: int, end: int, limit: int = 10) -> tuple[list[str], bool]:
            found = triage_store.rows_where(
                session, host_id, {"process_lineage"}, "parent", ["1"], start, end, limit
            )
            return [r.columns["pid"] for r in found.rows], found.cut

        assert pids(100, 100) == (["10"], False)  # present at 100 only
        assert pids(150, 250) == (["10", "11"], False)  # 10 closed at 200, 11 opened then
        assert pids(0, 1000) == (["10", "11", "12"], False)
        assert pids(0, 1000, limit=2) == (["10", "11"], True)
        assert triage_store.rows_where(
            session, host_id, {"process_stdio"}, "pid", ["10"], 0, 1000, 10
        ) == triage_store.Slice([], False)  # a query the host never sent


def test_starts_of_a_pair_take_names_literally(store: tuple[Any, int]) -> None:
    factory, host_id = store
    with session_scope(factory) as session:
        found = triage_store.starts_of(
            session, host_id, {"process_lineage"}, "cron", "my_tool", 1000, 10
        )
        assert [r.columns["pid"] for r in found.rows] == ["10", "12"]  # not myXtool
        before = triage_store.starts_of(
            session, host_id, {"process_lineage"}, "cron", "my_tool", 300, 10
        )
        assert [r.columns["pid"] for r in before.rows] == ["10"]  # first seen before 300
        assert triage_store.history_start(session, host_id, {"process_lineage"}) == 100
        assert triage_store.history_start(session, host_id, {"process_stdio"}) is None
        assert triage_store.last_runs(session, host_id) == {"process_lineage": 300}
        assert triage_store.gaps_between(session, host_id, 0, 1000, 10) == []
        assert triage_store.rejected_between(session, host_id, 0, 1000) == 0


def test_the_schedule_report_gives_each_query_its_last_execution(
    store: tuple[Any, int],
) -> None:
    factory, host_id = store
    with session_scope(factory) as session:
        assert triage_store.schedule_report(session, host_id) is None
    schedule = snapshot(
        [
            {"name": LINEAGE, "interval": "60", "last_executed": "990"},
            {"name": "pack_gone_query", "interval": "60", "last_executed": "500"},
            {"name": "pack_ipc-telemetry_stdio_channels", "last_executed": "not a time"},
        ],
        1000,
    ) | {"name": "pack_telemetry-health_schedule_health"}
    with session_scope(factory) as session:
        apply_runs(session, host_id, parse_result_lines([schedule]).runs, 1001)
    with session_scope(factory) as session:
        report = triage_store.schedule_report(session, host_id)
    # Only queries the host logged under that name are named; a junk time is passed over.
    assert report == triage_store.ScheduleReport(1000, {"process_lineage": 990})
