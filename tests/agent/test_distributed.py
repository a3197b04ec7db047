"""Distributed queries: a real server whose read hands out queued queries, the agent runs
them on the engine and writes the answers; what it wrote is read off the wire."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fleetctl.agent.distributed import RejectedRead, parse_read
from fleetctl.agent.engines import EmbeddedEngine
from fleetctl.engine import Engine, string_rows
from tests.agent.conftest import (
    AgentFactory,
    FleetServer,
    RecordingTransport,
    spawn_sleep,
    wait_for,
)

Queue = list[dict[str, Any]]


@pytest.fixture
def read_queue(monkeypatch: pytest.MonkeyPatch) -> Queue:
    """Answers the server's distributed read hands out, one per read, in order."""
    from fleetctl.server import app as app_module
    from fleetctl.server import osquery_api

    queue: Queue = []
    real_build = app_module.build_app

    def build(state: Any) -> Any:
        app = real_build(state)

        async def read(request: Request) -> Response:
            await osquery_api.authenticate(request, await request.json())
            answer = queue.pop(0) if queue else {}
            return JSONResponse({"queries": {}, **answer, "node_invalid": False})

        path = f"{osquery_api.PREFIX}/distributed/read"
        app.router.routes.insert(0, Route(path, read, methods=["POST"]))
        return app

    monkeypatch.setattr("fleetctl.server.runner.build_app", build)
    return queue


@pytest.fixture
def live_fleet(
    read_queue: Queue, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FleetServer]:
    monkeypatch.setenv("FLEETCTL_HOME", str(tmp_path / "home"))
    server = FleetServer(tmp_path / "home", sqlite_url)
    yield server
    server.stop()


def written(wire: RecordingTransport) -> dict[str, dict[str, Any]]:
    """Each query id's answer as the agent's distributed writes sent it."""
    out: dict[str, dict[str, Any]] = {}
    for exchange in wire.exchanges:
        if exchange.path.endswith("/distributed/write"):
            body = exchange.body
            for qid in set(body["queries"]) | set(body["statuses"]):
                out[qid] = {
                    "status": body["statuses"].get(qid),
                    "message": body["messages"].get(qid),
                    "rows": body["queries"].get(qid),
                    "stats": body["stats"].get(qid),
                }
    return out


def test_queued_queries_are_answered_with_rows_statuses_and_messages(
    live_fleet: FleetServer,
    read_queue: Queue,
    served_config: dict[str, Any],
    make_agent: AgentFactory,
) -> None:
    child = spawn_sleep()
    sql = f"SELECT pid, parent, cmdline FROM processes WHERE pid = {child.pid}"
    read_queue.append(
        {
            "queries": {
                "procs": sql,
                "missing": "SELECT * FROM no_such_table",
                "skipped": "SELECT 1 AS one",
                "wanted": "SELECT 2 AS two",
            },
            "discovery": {"skipped": "SELECT 1 WHERE 0", "wanted": "SELECT 1"},
        }
    )
    read_queue.append(
        {  # a failing discovery rejects the whole answer
            "queries": {"never_a": "SELECT 1 AS one", "never_b": "SELECT 1 AS one"},
            "discovery": {"never_b": "SELECT * FROM nowhere"},
        }
    )
    wire = RecordingTransport(live_fleet.ca)
    agent = make_agent(live_fleet, http_transport=wire)
    try:
        agent.start()
        wait_for(lambda: written(wire) or None, what="distributed write")
        wait_for(lambda: not read_queue, what="second read")
        agent.stop()
        results = written(wire)
    finally:
        child.kill()
        child.wait()
    assert set(results) == {"procs", "missing", "wanted"}
    assert results["procs"]["status"] == 0 and results["procs"]["message"] == ""
    assert results["procs"]["rows"] == [
        {"pid": str(child.pid), "parent": str(os.getpid()), "cmdline": "sleep 300"}
    ]
    assert results["missing"]["status"] == 1
    assert results["missing"]["message"] == "no such table: no_such_table"
    assert results["missing"]["rows"] == []
    assert results["wanted"]["rows"] == [{"two": "2"}]
    assert set(results["procs"]["stats"] or {}) == {
        "wall_time_ms",
        "user_time",
        "system_time",
        "memory",
    }


def test_parse_read_follows_osquery_rules() -> None:
    engine = EmbeddedEngine()

    def count(sql: str) -> int:
        return len(engine.query(sql).rows)

    work = parse_read(
        {"queries": {"a": "SELECT 1", "b": "", "c": "SELECT 3"}, "accelerate": 60}, count
    )
    assert work.queries == {"a": "SELECT 1"}  # parsing stops at the empty query
    assert work.accelerate == 60
    assert parse_read({"queries": {"a": "SELECT 1"}, "accelerate": "60"}, count).accelerate is None
    with pytest.raises(RejectedRead):
        parse_read({"queries": {"a": "SELECT 1"}, "discovery": {"a": "SELECT * FROM x"}}, count)


def test_rows_keep_sql_column_order_as_strings() -> None:
    engine = Engine()
    result = engine.query("SELECT 1 AS z, NULL AS a, 'x' AS m")
    assert list(string_rows(result.rows, result.columns)[0]) == ["z", "a", "m"]
    assert string_rows(result.rows, result.columns)[0] == {"z": "1", "a": "", "m": "x"}
