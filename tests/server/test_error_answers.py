"""Every error is JSON with the right status: hostile input on every admin route (taken
from the app's route table, so a new route is walked too), unknown routes and methods,
database errors, and bugs, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.server.admin_queries import MAX_TIMEOUT
from tests.conftest import RunningServer

ADMIN = "/api/v1/admin"
HUNDRED_KB = "x" * 100_000
LONG_URL_VALUE = "x" * 60_000  # httpx sends URLs up to 64 KB; bodies carry the 100 KB

# Path parameter values no route may accept: past BIGINT, negative, NUL, 100 KB,
# a float, a non-ASCII digit, a LIKE wildcard.
HOSTILE_PATH = [
    "123456789012345678901",
    "-1",
    "\x00",
    "a\x00b",
    LONG_URL_VALUE,
    "1.5",
    "\u00b2",
    "%",
]
# Every query parameter the admin API reads; each route gets each with hostile values.
QUERY_NAMES = [
    "host",
    "query",
    "at",
    "since",
    "limit",
    "offset",
    "run",
    "version",
    "pid",
    "status",
    "min_severity",
    "diff",
]
HOSTILE_QUERY = [
    "123456789012345678901",
    "-1",
    "a\x00",
    LONG_URL_VALUE,
    "1e400",
    "-9223372036854775809",
]
# Every field an admin JSON body carries; each body route gets all of them at once.
BODY_FIELDS = [
    "sql",
    "limit",
    "targets",
    "timeout",
    "name",
    "packs",
    "query",
    "hosts",
    "platform",
    "description",
    "cron",
    "every",
    "once",
    "expires",
    "note",
    "scope",
    "yaml",
    "expected_version",
    "host",
    "since",
    "learn",
    "user",
    "role",
    "ttl",
    "password",
    "label",
    "secret",
    "keep_old",
]
WRONG_TYPES: list[Any] = [
    "123456789012345678901",
    1.5,
    {"a": {"b": [1]}},
    [1, "x"],
    -1,
    2**63,
    HUNDRED_KB,
    True,
    "a\x00",
]
MALFORMED_BODIES = [b"", b"{", b"[1]", b'"x"', b"null", b"1e400", b'{"a": NaN}']
DEEP = b'{"a":' * 1000 + b"1" + b"}" * 1000
PACK = {"queries": {"pids": {"query": "SELECT pid FROM processes;", "interval": 60}}}


def admin_routes(server: RunningServer) -> list[Route]:
    app = server.thread.server.config.app
    return [r for r in app.routes if isinstance(r, Route) and r.path.startswith(ADMIN)]


def methods(route: Route) -> list[str]:
    return sorted((route.methods or set()) - {"HEAD"})


def fill(route: Route, values: dict[str, str]) -> str:
    path = route.path_format
    for name in route.param_convertors:
        path = path.replace("{" + name + "}", quote(values[name], safe=""))
    return path


def assert_json_4xx(response: httpx.Response, what: str) -> dict[str, Any]:
    assert response.headers["content-type"] == "application/json", (what, response.text[:200])
    body: dict[str, Any] = response.json()
    assert 400 <= response.status_code < 500, (what, response.status_code, body)
    assert isinstance(body.get("error"), str) and body["error"], (what, body)
    return body


@pytest.fixture
def fleet(server: RunningServer) -> Iterator[tuple[RunningServer, httpx.Client, dict[str, str]]]:
    """A host with a result, a pack, a label, a live query and a hunt, all named so the
    walk's path parameters reach real objects."""
    node = server.node()
    node.enroll()
    line = {"name": "q", "unixTime": 100, "epoch": 0, "counter": 0, "numerics": False}
    node.call("/log", {"log_type": "result", "data": [{**line, "columns": {"a": "1"}}]})
    admin = server.admin()
    for path, body in [
        ("/packs/apply", {"packs": [{"name": "x", "pack": PACK}]}),
        ("/labels", {"name": "x", "hosts": ["jumpvm"]}),
        ("/hunts", {"name": "x", "sql": "SELECT 1;", "cron": "0 0 1 1 *"}),
    ]:
        assert admin.post(ADMIN + path, json=body).status_code == 200, path
    started = admin.post(ADMIN + "/queries", json={"sql": "SELECT 1;", "timeout": MAX_TIMEOUT})
    existing = {"ref": "jumpvm", "name": "x", "id": str(started.json()["id"])}
    yield server, admin, existing
    assert admin.get(ADMIN + "/hosts").status_code == 200  # still serving after the walk
    assert node.call("/distributed/read")["node_invalid"] is False


def test_hostile_path_parameters_answer_json_4xx(fleet: Any) -> None:
    server, admin, _ = fleet
    walked = 0
    for route in admin_routes(server):
        if not route.param_convertors:
            continue
        for value in HOSTILE_PATH:
            path = fill(route, dict.fromkeys(route.param_convertors, value))
            for method in methods(route):
                body = {} if method in ("POST", "PUT") else None
                response = admin.request(method, path, json=body)
                assert_json_4xx(response, f"{method} {route.path} <- {value[:30]!r}")
                walked += 1
    assert walked >= 13 * len(HOSTILE_PATH)


CHECK_IN_CLOCKS = frozenset({"last_seen", "online"})


def clockless(route: Route, answer: Any) -> Any:
    """The answer without what moves with the clock between two calls: the coverage
    report says how long ago things happened, so its cells are compared by status; a
    host's last check-in is written behind its requests, so it may move between two
    reads of the host a moment apart."""
    if route.path == ADMIN + "/coverage":
        hosts = answer["hosts"]
        return [(h["host"], {i: c["status"] for i, c in h["cells"].items()}) for h in hosts]
    if isinstance(answer, dict):
        kept = {
            k: v for k, v in answer.items() if k not in CHECK_IN_CLOCKS or "hostname" not in answer
        }
        return {k: clockless(route, v) for k, v in kept.items()}
    if isinstance(answer, list):
        return [clockless(route, v) for v in answer]
    return answer


def test_hostile_query_parameters_answer_json_4xx_unless_the_route_reads_none(
    fleet: Any,
) -> None:
    """A route that takes the parameter must refuse the hostile value; a route that takes
    none answers exactly as it does without it."""
    server, admin, existing = fleet
    refused = 0
    for route in admin_routes(server):
        if "GET" not in methods(route):
            continue
        path = fill(route, existing)
        for name in QUERY_NAMES:
            for value in HOSTILE_QUERY:
                response = admin.get(path, params={name: value})
                what = f"GET {route.path}?{name}={value[:30]!r}"
                if response.status_code == 200:
                    plain = admin.get(path)
                    assert clockless(route, response.json()) == clockless(route, plain.json()), what
                    continue
                assert_json_4xx(response, what)
                refused += 1
    # Each parameter is read by at least one route, which refused every hostile value.
    assert refused >= len(QUERY_NAMES) * len(HOSTILE_QUERY)


def test_hostile_bodies_answer_json_4xx(fleet: Any) -> None:
    server, admin, _ = fleet
    for route in admin_routes(server):
        for method in set(methods(route)) & {"POST", "PUT"}:
            path = fill(route, dict.fromkeys(route.param_convertors, "nosuch"))
            for raw in [*MALFORMED_BODIES, DEEP]:
                response = admin.request(method, path, content=raw)
                assert_json_4xx(response, f"{method} {route.path} <- {raw[:20]!r}")
            for value in WRONG_TYPES:
                body = dict.fromkeys(BODY_FIELDS, value)
                response = admin.request(method, path, json=body)
                assert_json_4xx(response, f"{method} {route.path} <- {str(value)[:30]}")
            # JSON null means "left out": an all-null body is answered like an empty one.
            nulls = admin.request(method, path, json=dict.fromkeys(BODY_FIELDS))
            empty = admin.request(method, path, json={})
            assert nulls.status_code == empty.status_code, route.path
            if nulls.status_code != 200:
                assert_json_4xx(nulls, f"{method} {route.path} <- nulls")


def test_deep_pack_is_refused_before_validation(fleet: Any) -> None:
    _, admin, _ = fleet
    deep: dict[str, Any] = {"interval": 60}
    for _ in range(900):
        deep = {"a": deep}
    response = admin.post(ADMIN + "/packs/apply", json={"packs": [{"name": "d", "pack": deep}]})
    assert assert_json_4xx(response, "deep pack")["error"] == (
        "the body nests deeper than 32 levels"
    )


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (
            "/results",
            {"host": "1", "query": "q", "at": "99999999999999999999"},
            "'at': time out of range: '99999999999999999999' (from 1970 to 9999)",
        ),
        (
            "/queries/123456789012345678901",
            {},
            "'id' must be an integer from 1 to 9223372036854775807",
        ),
        (
            "/status-logs",
            {"host": "1", "limit": "-1"},
            "'limit' must be an integer from 1 to 100000",
        ),
        ("/hosts/%00", {}, "the path contains a NUL byte"),
        (
            "/hosts/99999999999999999999",
            {},
            "no host matches '99999999999999999999' (id, host identifier, hostname or uuid)",
        ),
        (
            "/findings",
            {"status": "closed"},
            "'status' must be one of open, reopened, acked, suppressed",
        ),
        ("/hunts/x/results", {"diff": "maybe"}, "'diff' must be true or false"),
        (
            "/packs/x",
            {"version": "2147483648"},
            "'version' must be an integer from 1 to 2147483647",
        ),
        ("/hosts", {"host": "a" * 1025}, "'host' is longer than 1024 characters"),
    ],
)
def test_what_was_seen_answers_a_clear_400(
    server: RunningServer, path: str, params: dict[str, str], message: str
) -> None:
    server.node().enroll()
    response = server.admin().get(ADMIN + path, params=params)
    assert response.status_code in (400, 404)
    assert response.json() == {"error": message}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"sql": "SELECT 1;", "timeout": "60"}, "'timeout' must be an integer from 1 to 604800"),
        ({"sql": "SELECT 1;", "timeout": 60.0}, "'timeout' must be an integer from 1 to 604800"),
        ({"sql": "SELECT 1;", "targets": {"all": 1}}, "'targets' must be a string"),
        ({"sql": "SELECT 1;", "name": "n" * 256}, "'name' is longer than 255 characters"),
        ({"sql": "SELECT 1;", "targets": "host:99999999999999999999"}, "no host matches"),
        ({"sql": "SELECT 1;", "targets": "label:a\x00"}, "the body contains a NUL byte"),
    ],
)
def test_live_query_fields_are_checked(
    server: RunningServer, body: dict[str, Any], message: str
) -> None:
    response = server.admin().post(ADMIN + "/queries", json=body)
    assert_json_4xx(response, str(body))
    assert message in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"cron": 5}, "'cron' must be a string"),
        ({"every": "60"}, "'every' must be an integer from 1 to 31622400"),
        ({"every": 10**12}, "'every' must be an integer from 1 to 31622400"),
        ({"once": True, "expires": 0}, "'expires' must be an integer from 1 to 604800"),
        ({"once": True, "targets": "t" * 513}, "'targets' is longer than 512 characters"),
    ],
)
def test_hunt_fields_are_checked(server: RunningServer, body: dict[str, Any], message: str) -> None:
    response = server.admin().post(ADMIN + "/hunts", json={"name": "h", "sql": "SELECT 1;", **body})
    assert assert_json_4xx(response, str(body))["error"] == message


def test_a_long_every_hunt_expires_within_the_longest_run(server: RunningServer) -> None:
    every = 30 * 86400
    admin = server.admin()
    answer = admin.post(ADMIN + "/hunts", json={"name": "m", "sql": "SELECT 1;", "every": every})
    assert answer.status_code == 200, answer.text
    assert answer.json()["hunt"]["expires"] == "1w"


def test_unknown_routes_and_methods_answer_json(server: RunningServer) -> None:
    admin = server.admin()
    unknown = admin.get(ADMIN + "/nope")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no such endpoint"})
    wrong = admin.delete(ADMIN + "/hosts")
    assert (wrong.status_code, wrong.json()) == (
        405,
        {"error": "method DELETE is not allowed here"},
    )
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}
    node = server.node()
    lost = node.http.post("/api/v1/osquery/nope", json={})
    assert (lost.status_code, lost.json()) == (
        404,
        {"error": "no such endpoint", "node_invalid": False},
    )
    got = node.http.get("/api/v1/osquery/config")
    assert got.status_code == 405 and got.json()["node_invalid"] is False


def test_a_database_refusal_of_host_input_is_a_400_in_osquerys_shape(
    server: RunningServer, db_url: str
) -> None:
    node = server.node("nul\x00host", "uuid-nul")
    answer = node.http.post(
        "/api/v1/osquery/enroll",
        json={
            "enroll_secret": server.secret,
            "host_identifier": "nul\x00host",
            "host_details": node.host_details(),
        },
    )
    if db_url.startswith("postgresql"):
        assert answer.status_code == 400
        assert answer.json()["node_invalid"] is False
        assert answer.json()["error"].startswith("a value does not fit the store: ")
    else:  # SQLite stores the byte; the answer is osquery's shape either way
        assert answer.status_code == 200 and answer.json()["node_invalid"] is False
    assert server.admin().get(ADMIN + "/hosts").status_code == 200


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_bug_answers_json_500_and_logs_its_traceback_once(server: RunningServer) -> None:
    async def broken(request: Request) -> Any:
        raise RuntimeError("a bug")

    app = server.thread.server.config.app
    app.router.routes.append(Route(ADMIN + "/broken", broken, methods=["GET"]))
    records = Records()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "fleetctl.server")]
    for logger in loggers:
        logger.addHandler(records)

    def tracebacks() -> list[logging.LogRecord]:
        return [r for r in records.records if r.exc_info]

    try:
        admin = server.admin()
        answer = admin.get(ADMIN + "/broken")
        # uvicorn logs once the exception leaves the app, after the answer is sent.
        deadline = time.monotonic() + 5
        while not tracebacks() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # room for a second one, were there any
    finally:
        for logger in loggers:
            logger.removeHandler(records)
    assert (answer.status_code, answer.json()) == (500, {"error": "internal server error"})
    assert answer.headers["connection"] == "close"
    assert len(tracebacks()) == 1 and "a bug" in str(tracebacks()[0].exc_info[1])  # type: ignore[index]
    assert admin.get(ADMIN + "/hosts").status_code == 200
