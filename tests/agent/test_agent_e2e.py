"""The agent against a real fleet server over TLS, with real processes in /proc."""

from __future__ import annotations

import os
from typing import Any

from fleetctl.engine import Engine, string_rows
from tests.agent.conftest import (
    HOST,
    AgentFactory,
    FleetServer,
    children_sql,
    spawn_sleep,
    wait_for,
)


def ipc_config(config: dict[str, Any]) -> None:
    """Schedule, snapshot, removed:false, and packs that discovery and platform filter."""
    me = os.getpid()
    config["schedule"] = {
        "children": {"query": children_sql(), "interval": 1},
        "children_kept": {"query": children_sql("pid, cmdline"), "interval": 1, "removed": False},
        "me": {
            "query": f"SELECT pid, name FROM processes WHERE pid = {me}",
            "interval": 1,
            "snapshot": True,
        },
    }
    config["packs"] = {
        "ipc": {
            "platform": "linux",
            "discovery": ["SELECT 1 FROM system_info"],
            "queries": {
                "pipes": {
                    "query": "SELECT pid, fd, mode, partner_pid FROM process_open_pipes "
                    f"WHERE pid IN ({children_sql('pid')}) AND partner_pid = {me}",
                    "interval": 2,
                },
                "darwin_only": {"query": "SELECT 1 AS one", "interval": 1, "platform": "darwin"},
            },
        },
        "never": {
            "discovery": ["SELECT 1 FROM processes WHERE pid = -1"],
            "queries": {"one": {"query": "SELECT 1 AS one", "interval": 1}},
        },
        "broken": {
            "discovery": ["SELECT * FROM no_such_table"],
            "queries": {"one": {"query": "SELECT 1 AS one", "interval": 1}},
        },
        "mac": {
            "platform": "darwin",
            "queries": {"one": {"query": "SELECT 1 AS one", "interval": 1}},
        },
    }


def pids(rows: list[dict[str, Any]]) -> set[int]:
    return {int(r["pid"]) for r in rows}


def test_schedule_diffs_snapshots_and_packs_reach_the_server(
    any_fleet: FleetServer, served_config: dict[str, Any], make_agent: AgentFactory
) -> None:
    fleet = any_fleet
    ipc_config(served_config)
    first = spawn_sleep()
    second = None
    agent = make_agent(fleet)
    try:
        agent.start()
        # Counter-0 baseline with the child that already runs.
        wait_for(lambda: pids(fleet.rows("children")) == {first.pid}, what="baseline")
        state = fleet.queries()
        assert state["children"]["counter"] == 0 and state["children"]["epoch"] == 0

        # The stored row is what the engine sees for the child.
        seen = string_rows(Engine().query(children_sql()).rows)
        assert [
            {k: r[k] for k in ("pid", "parent", "cmdline")} for r in fleet.rows("children")
        ] == seen
        assert seen == [{"pid": str(first.pid), "parent": str(os.getpid()), "cmdline": "sleep 300"}]

        second = spawn_sleep()
        wait_for(
            lambda: pids(fleet.rows("children")) == {first.pid, second.pid}, what="added child"
        )
        assert fleet.queries()["children"]["counter"] == 1
        first.kill()
        first.wait()
        wait_for(lambda: pids(fleet.rows("children")) == {second.pid}, what="removed child")
        assert fleet.queries()["children"]["counter"] == 2

        # removed: false never reports the removal, so the server still has the row.
        wait_for(
            lambda: pids(fleet.rows("children_kept")) == {first.pid, second.pid},
            what="removed:false keeps rows",
        )

        # A snapshot carries the whole state every run.
        snap = wait_for(lambda: fleet.rows("me"), what="snapshot")
        assert snap[0]["pid"] == str(os.getpid())

        # Pipes: the child's stdout is a pipe whose reader is this process.
        def pipe_ends() -> set[tuple[str, ...]]:
            rows = fleet.rows("pack_ipc_pipes")
            return {(r["pid"], r["fd"], r["mode"], r["partner_pid"]) for r in rows}

        expected = {(str(second.pid), "1", "w", str(os.getpid()))}
        wait_for(lambda: pipe_ends() == expected, what="pipes")

        names = set(fleet.queries())
        assert not names & {
            "pack_ipc_darwin_only",
            "pack_never_one",
            "pack_broken_one",
            "pack_mac_one",
        }
        # Only removed:false can leave a counter gap (a run of removals logs no line).
        assert [m for m in fleet.data_loss() if m["query"] != "children_kept"] == []
    finally:
        agent.stop()
        for child in (first, second):
            if child is not None:
                child.kill()
                child.wait()
    host = fleet.admin_get(f"/hosts/{HOST}")
    assert host["host"]["host_identifier"] == HOST
    details = host["host_details"]
    assert set(details) == {"os_version", "osquery_info", "system_info", "platform_info"}
    assert all(isinstance(v, str) for v in details["system_info"].values())
    assert host["host"]["decorations"]["hostname"] == details["system_info"]["hostname"]
