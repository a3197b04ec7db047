"""Bad input gets a clear JSON error, the server keeps serving, nothing is half-written;
a bad line is quarantined with its reason and the rest of its batch stored."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest
from sqlalchemy import func, select

from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import QueryState, RejectedLine, ResultRow, StatusLog
from tests.conftest import RunningServer


def count(server: RunningServer, model: Any) -> int:
    engine = make_engine(server.settings.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def line(pid: str, counter: Any = 0, **over: Any) -> dict[str, Any]:
    base = {
        "name": "pack_ipc_processes",
        "hostIdentifier": "jumpvm",
        "unixTime": 100 + (counter if isinstance(counter, int) else 0),
        "epoch": 0,
        "counter": counter,
        "numerics": False,
        "columns": {"pid": pid, "cmdline": "sh"},
        "action": "added",
    }
    base.update(over)
    return base


def raw_post(node: Any, path: str, content: bytes, **headers: str) -> Any:
    response = node.http.post(
        f"/api/v1/osquery{path}",
        content=content,
        headers={"Content-Type": "application/json", **headers},
    )
    return response.status_code, response.json()


@pytest.fixture
def node(server: RunningServer) -> Any:
    n = server.node()
    n.enroll()
    return n


def assert_still_serving(node: Any) -> None:
    assert node.call("/distributed/read") == {"node_invalid": False, "queries": {}}


def test_malformed_json(node: Any) -> None:
    status, body = raw_post(
        node,
        "/log",
        b'{"node_key": "x", "data": [',
    )
    assert status == 400 and body["node_invalid"] is False
    assert body["error"].startswith("malformed JSON")
    assert_still_serving(node)


def test_body_must_be_an_object(node: Any) -> None:
    _, body = raw_post(node, "/log", b"[1, 2]")
    assert body == {"error": "expected a JSON object, got list", "node_invalid": False}


def reasons(server: RunningServer) -> list[str]:
    engine = make_engine(server.settings.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as s:
            return list(s.scalars(select(RejectedLine.reason).order_by(RejectedLine.id)))
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"log_type": "result", "data": {"a": 1}}, "'data' must be a list of log lines, got dict"),
        (
            {"log_type": "results", "data": []},
            "unknown log_type 'results': expected 'result' or 'status'",
        ),
    ],
)
def test_wrong_body_is_refused_and_nothing_is_stored(
    server: RunningServer, node: Any, payload: dict[str, Any], message: str
) -> None:
    answer = node.call("/log", payload)
    assert answer["node_invalid"] is False
    assert message in answer["error"]
    assert count(server, ResultRow) == 0 and count(server, StatusLog) == 0
    assert count(server, RejectedLine) == 0
    assert_still_serving(node)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            {"log_type": "result", "data": [{**line("1"), "counter": "abc"}]},
            "'counter' must be an integer, got str 'abc'",
        ),
        (
            {"log_type": "result", "data": [line("1", unixTime=1.5)]},
            "'unixTime' must be an integer, got float 1.5",
        ),
        (
            {"log_type": "result", "data": [line("1", columns=[1])]},
            "a row must be an object, got list",
        ),
        (
            {"log_type": "result", "data": [line("1", action="changed")]},
            "'action' must be added, removed or snapshot",
        ),
        (
            {"log_type": "result", "data": [line("1", columns={"pid": {"x": 1}})]},
            "column 'pid' must be a scalar, got dict",
        ),
        ({"log_type": "status", "data": [{"message": 5}]}, "'message' must be a string"),
    ],
)
def test_wrong_types_are_quarantined_and_nothing_is_stored(
    server: RunningServer, node: Any, payload: dict[str, Any], message: str
) -> None:
    assert node.call("/log", payload) == {"node_invalid": False}
    assert reasons(server) == [message]
    assert count(server, ResultRow) == 0 and count(server, StatusLog) == 0
    assert_still_serving(node)


def test_bad_line_in_the_middle_of_a_batch_is_quarantined_and_the_rest_stored(
    server: RunningServer, node: Any
) -> None:
    good = [line(str(pid), 0) for pid in range(600)]
    bad = [
        *good,
        {"name": "pack_ipc_processes", "unixTime": 100, "columns": {}, "action": "?"},
        *good,
    ]
    assert node.call("/log", {"log_type": "result", "data": bad}) == {"node_invalid": False}
    assert reasons(server) == ["'action' must be added, removed or snapshot"]
    assert count(server, ResultRow) == 600 and count(server, QueryState) == 1
    # osqueryd's next batch lands too.
    nxt = [line("600", 1, action="added")]
    assert node.call("/log", {"log_type": "result", "data": nxt}) == {"node_invalid": False}
    assert count(server, ResultRow) == 601


def test_oversized_body_is_refused(tmp_path: Any, db_url: str, monkeypatch: Any) -> None:
    home = tmp_path / "small"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    server = RunningServer(home, db_url, max_body=64 * 1024)
    try:
        node = server.node()
        node.enroll()
        data = [line(str(i)) for i in range(2000)]
        answer = node.call("/log", {"log_type": "result", "data": data})
        assert answer == {"error": answer["error"], "node_invalid": False}
        assert "exceeds the 65536-byte limit" in answer["error"]
        assert count(server, ResultRow) == 0
        assert_still_serving(node)
    finally:
        server.stop()


def test_gzip_bomb_is_refused_while_inflating(server: RunningServer, node: Any) -> None:
    # 1 GiB of zeros compresses to about 1 MiB; the server stops at 16 MiB inflated.
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    chunk = b"\0" * (1 << 20)
    bomb = b"".join(compressor.compress(chunk) for _ in range(1024)) + compressor.flush()
    assert len(bomb) < 2 * 1024 * 1024
    status, body = raw_post(node, "/log", bomb, **{"Content-Encoding": "gzip"})
    assert status == 413 and "decompressed body exceeds" in body["error"]
    assert_still_serving(node)


def test_corrupt_gzip(node: Any) -> None:
    status, body = raw_post(
        node, "/log", gzip.compress(b'{"a": 1}')[:-6], **{"Content-Encoding": "gzip"}
    )
    assert status == 400 and "not valid gzip" in body["error"]


def test_line_naming_another_enrolled_host_is_quarantined(server: RunningServer, node: Any) -> None:
    other = server.node("workstation-7", "uuid-ws7")
    other.enroll()
    answer = node.call(
        "/log",
        {"log_type": "result", "data": [line("1"), line("2", hostIdentifier="workstation-7")]},
    )
    assert answer == {"node_invalid": False}
    assert reasons(server) == ["names host 'workstation-7', another enrolled host"]
    assert count(server, ResultRow) == 1


def test_sql_looking_strings_are_stored_verbatim(server: RunningServer, node: Any) -> None:
    evil = "x'); DROP TABLE result_rows; --"
    data = [line(evil, name=f"q{evil}", columns={"pid": evil, evil: "1"}, decorations={evil: evil})]
    assert node.call("/log", {"log_type": "result", "data": data}) == {"node_invalid": False}
    admin = server.admin()
    rows = admin.get("/api/v1/admin/results", params={"host": "jumpvm", "query": f"q{evil}"})
    assert rows.json()["rows"][0]["pid"] == evil
    assert count(server, ResultRow) == 1


def test_redelivered_batch_changes_nothing(server: RunningServer, node: Any) -> None:
    """osqueryd resends a batch whose reply it never saw; the second copy is a no-op."""
    first = [line("1", 0), line("2", 0)]
    node.call("/log", {"log_type": "result", "data": first})
    then = [line("1", 1, action="removed"), line("3", 1)]
    node.call("/log", {"log_type": "result", "data": then})
    node.call("/log", {"log_type": "result", "data": then})
    status = [{"unixTime": 1, "severity": 0, "message": "m", "filename": "f", "line": 1}]
    node.call("/log", {"log_type": "status", "data": status})
    node.call("/log", {"log_type": "status", "data": [*status, {**status[0], "unixTime": 2}]})
    assert count(server, StatusLog) == 2
    admin = server.admin()
    rows = admin.get(
        "/api/v1/admin/results", params={"host": "jumpvm", "query": "pack_ipc_processes"}
    ).json()["rows"]
    assert sorted(r["pid"] for r in rows) == ["2", "3"]
    assert count(server, ResultRow) == 3


def test_bad_admin_token(server: RunningServer) -> None:
    admin = server.admin()
    admin.headers["Authorization"] = "Bearer wrong"
    response = admin.get("/api/v1/admin/hosts")
    assert response.status_code == 401
    assert response.json() == {"error": "missing or invalid admin token"}
