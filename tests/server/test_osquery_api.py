"""osquery's TLS API over real HTTPS on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from storage.models import Host, StatusLog
from tests.conftest import RunningServer


def ev(name: str, action: str, cols: dict[str, str], t: int, counter: int) -> dict[str, Any]:
    return {
        "name": name,
        "hostIdentifier": "jumpvm",
        "calendarTime": "x",
        "unixTime": t,
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        "columns": cols,
        "action": action,
    }


def test_enroll_config_and_checkin(server: RunningServer) -> None:
    node = server.node()
    answer = node.enroll()
    assert answer["node_invalid"] is False and len(answer["node_key"]) > 30
    config = node.call("/config")
    assert config["node_invalid"] is False
    assert config["options"]["pack_delimiter"] == "_"
    assert any("system_info" in q for q in config["decorators"]["load"])
    assert node.call("/distributed/read") == {"node_invalid": False, "queries": {}}


def test_node_key_in_authorization_header(server: RunningServer) -> None:
    node = server.node()
    node.enroll()
    response = node.http.post(
        "/api/v1/osquery/config", json={}, headers={"Authorization": f"NodeKey {node.node_key}"}
    )
    assert response.json()["node_invalid"] is False


def test_unknown_node_key_answers_node_invalid(server: RunningServer) -> None:
    node = server.node()
    node.node_key = "not-a-key"
    for path in ("/config", "/log", "/distributed/read", "/distributed/write", "/carve/begin"):
        answer = node.call(path, {"log_type": "result", "data": []})
        assert answer["node_invalid"] is True, path
        assert "enroll" in answer["error"]


def test_bad_enroll_secret_is_refused_and_repeated_failures_slow_down(
    server: RunningServer,
) -> None:
    node = server.node()
    node.secret = "wrong"
    answer = node.enroll()
    assert answer == {"error": "invalid enroll secret", "node_invalid": False}
    assert node.node_key is None
    for _ in range(5):
        node.enroll()
    started = time.monotonic()
    node.enroll()  # the 7th failure within a minute waits before answering
    assert time.monotonic() - started >= 0.4
    node.secret = server.secret
    assert node.enroll()["node_key"]


def test_a_forwarded_for_header_does_not_escape_the_enroll_throttle(
    server: RunningServer,
) -> None:
    node = server.node()
    node.secret = "wrong"
    for n in range(6):
        node.http.headers["X-Forwarded-For"] = f"10.0.0.{n}"
        node.enroll()
    node.http.headers["X-Forwarded-For"] = "10.0.0.99"
    started = time.monotonic()
    node.enroll()  # still the 7th failure from this client's own address
    assert time.monotonic() - started >= 0.4


def test_reenroll_with_same_uuid_keeps_history_and_invalidates_old_key(
    server: RunningServer,
) -> None:
    node = server.node()
    node.enroll()
    old_key = node.node_key
    node.log("result", [ev("q", "added", {"pid": "1"}, 100, 0)])
    node.enroll()
    assert node.node_key != old_key
    node.log("result", [ev("q", "added", {"pid": "2"}, 200, 1)])
    hosts = server.query(select(Host.id, Host.enroll_count))
    assert hosts == [(1, 2)]
    rows = (
        server.admin().get("/api/v1/admin/results", params={"host": "jumpvm", "query": "q"}).json()
    )
    assert [r["pid"] for r in rows["rows"]] == ["1", "2"]
    stale = node.post("/config", {"node_key": old_key})
    assert stale["node_invalid"] is True


def test_gzip_log_body_and_status_logs(server: RunningServer) -> None:
    node = server.node()
    node.enroll()
    status = {
        "hostIdentifier": "jumpvm",
        "calendarTime": "x",
        "unixTime": 100,
        "severity": 1,
        "filename": "scheduler.cpp",
        "line": 83,
        "message": "Executing scheduled query pack_ipc_x",
        "version": "5.8.2",
    }
    assert node.log("status", [status], compress=True) == [{"node_invalid": False}]
    rows = server.query(select(StatusLog.severity, StatusLog.filename, StatusLog.message))
    assert rows == [(1, "scheduler.cpp", "Executing scheduled query pack_ipc_x")]
