"""No poison-pill lines: through the real ``/log`` endpoint, on SQLite and PostgreSQL, a
line the store cannot hold as sent is stored faithfully (NUL) or quarantined with its
reason and content, the rest of its batch is stored, and the host's next batch too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from fleetctl.cli import main
from storage.encoding import unescape_row
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import Host, RejectedLine, ResultRow, StatusLog
from tests.conftest import RunningServer

NAME = "pack_ipc_processes"


def line(pid: str, **over: Any) -> dict[str, Any]:
    base = {
        "name": NAME,
        "hostIdentifier": "jumpvm",
        "calendarTime": "Mon Dec  7 10:00:00 2026 UTC",
        "unixTime": 100,
        "epoch": 0,
        "counter": 0,
        "numerics": False,
        "columns": {"pid": pid, "cmdline": "sh"},
        "action": "added",
    }
    base.update(over)
    return base


def status(message: str, **over: Any) -> dict[str, Any]:
    base = {
        "hostIdentifier": "jumpvm",
        "unixTime": 100,
        "severity": 0,
        "filename": "scheduler.cpp",
        "line": 83,
        "message": message,
        "version": "5.8.2",
    }
    base.update(over)
    return base


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def post(node: Any, log_type: str, data: list[Any]) -> dict[str, Any]:
    """POST as osqueryd would, JSON-encoded by the standard library: orjson cannot encode
    lone surrogates, integers beyond 64 bits or 500 levels of nesting."""
    body = {"node_key": node.node_key, "log_type": log_type, "data": data}
    response = node.http.post(
        "/api/v1/osquery/log",
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    answer: dict[str, Any] = response.json()
    return answer


class Store:
    """Reads of the server's database, as the test's own connection."""

    def __init__(self, server: RunningServer) -> None:
        self.engine = make_engine(server.settings.db_url)
        self.sessions = make_sessionmaker(self.engine)

    def count(self, model: Any) -> int:
        with session_scope(self.sessions) as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    def rejected(self) -> list[tuple[str, str, str, Any]]:
        """(log_type, name, reason, line) of every quarantined line, oldest first."""
        with session_scope(self.sessions) as s:
            return [
                (r.log_type, r.name, r.reason, json.loads(r.line))
                for r in s.scalars(select(RejectedLine).order_by(RejectedLine.id))
            ]

    def execute(self, *statements: str) -> None:
        with self.engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))


@pytest.fixture
def store(server: RunningServer) -> Iterator[Store]:
    s = Store(server)
    yield s
    s.engine.dispose()


@pytest.fixture
def node(server: RunningServer) -> Any:
    other = server.node("workstation-7", "uuid-ws7")
    other.enroll()
    n = server.node()
    n.enroll()
    return n


def results(server: RunningServer, query: str = NAME) -> list[dict[str, Any]]:
    answer = server.admin().get("/api/v1/admin/results", params={"host": "jumpvm", "query": query})
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["rows"]
    return rows


NUL_VALUE = "a\0b\u2400" + "0c\u2400\u2400"  # NUL beside text that looks like its escape
POISON: list[tuple[str, dict[str, Any], str]] = [
    # (what, line, the quarantine reason it gets)
    ("100,000-character query name", line("5", name="q" * 100_000), "over the store's 512"),
    ("counter 2^64", line("6", counter=2**64), "'counter' is out of range"),
    ("unixTime 2^63", line("7", unixTime=2**63), "'unixTime' is out of range"),
    ("epoch -1", line("8", epoch=-1), "'epoch' is out of range"),
    (
        "500-deep column value",
        line("9", columns={"pid": "9", "v": nested(500)}),
        "nested deeper than 254 levels",
    ),
    (
        "object column value",
        line("10", columns={"pid": "10", "v": {"a": 1}}),
        "column 'v' must be a scalar, got dict",
    ),
    (
        "lone surrogate in a value",
        line("11", columns={"pid": "11", "v": "x\udc80y"}),
        "not valid Unicode",
    ),
    (
        "another enrolled host",
        line("12", hostIdentifier="workstation-7"),
        "names host 'workstation-7', another enrolled host",
    ),
    (
        "300-character column name",
        line("13", columns={"pid": "13", "c" * 300: "v"}),
        "column name of 300 characters is over the store's 255",
    ),
    ("not an object", ["a", "list"], "each log line must be an object"),  # type: ignore[list-item]
    ("bad action", line("15", action="changed"), "'action' must be added, removed or snapshot"),
    ("missing unixTime", {**line("16"), "unixTime": None}, "missing 'unixTime'"),
]


def test_every_poison_line_is_stored_faithfully_or_quarantined(
    server: RunningServer, node: Any, store: Store
) -> None:
    faithful = [
        line("2", columns={"pid": "2", "cmdline": NUL_VALUE}),
        line("3", columns={"pid": "3", "x\0y": "v", "cmdline": "sh"}),
    ]
    poison = [bad for _, bad, _ in POISON]
    batch = [line("1"), *faithful, *poison, line("14")]
    assert post(node, "result", batch) == {"node_invalid": False}

    rows = {r["pid"]: r for r in results(server)}
    assert sorted(rows) == ["1", "14", "2", "3"]
    assert rows["2"]["cmdline"] == NUL_VALUE
    assert rows["3"]["x\0y"] == "v"
    quarantined = store.rejected()
    assert len(quarantined) == len(POISON)
    for (what, sent, reason), (log_type, name, got, kept) in zip(POISON, quarantined, strict=True):
        assert (log_type, reason in got) == ("result", True), (what, got)
        if what == "counter 2^64":  # read as orjson reads it: a double
            assert kept == {**sent, "counter": float(2**64)}
        else:
            assert kept == sent, what
        assert name == (sent["name"][:512] if isinstance(sent, dict) else ""), what

    # The host's next batch is stored.
    assert post(node, "result", [line("20", counter=1, unixTime=200)]) == {"node_invalid": False}
    assert "20" in {r["pid"] for r in results(server)}
    assert store.count(RejectedLine) == len(POISON)


def test_reasons_name_each_poison(server: RunningServer, node: Any, store: Store) -> None:
    """Each line alone: its reason, and nothing else of the batch lost."""
    for what, bad, reason in POISON:
        before = store.count(ResultRow)
        assert post(node, "result", [bad, line(f"ok-{what}")]) == {"node_invalid": False}
        assert reason in store.rejected()[-1][2], what
        assert store.count(ResultRow) == before + 1, what


def test_nul_in_query_name_and_decorations_round_trips(
    server: RunningServer, node: Any, store: Store
) -> None:
    name = "pack_ipc_q\0nul\u24000"
    decorations = {"host\0uuid": "u\0v", "plain": "\u2400"}
    data = [line("1", name=name, decorations=decorations)]
    assert post(node, "result", data) == {"node_invalid": False}
    assert [r["pid"] for r in results(server, name)] == ["1"]
    shown = server.admin().get("/api/v1/admin/hosts/jumpvm").json()
    assert [q["name"] for q in shown["queries"]] == [name]  # as the host sent it
    assert shown["host"]["decorations"] == decorations
    with session_scope(store.sessions) as s:
        host = s.scalars(select(Host).where(Host.host_identifier == "jumpvm")).one()
        assert unescape_row(host.decorations) == decorations
        stored = s.scalars(select(ResultRow.name)).one()
    if server.settings.db_url.startswith("sqlite"):
        assert stored == "pack_ipc_q\0nul\u2400\u24000"  # only the escape character escaped
    else:
        assert stored == "pack_ipc_q\u24000nul\u2400\u24000"
    assert store.count(RejectedLine) == 0


def test_status_lines_one_by_one(server: RunningServer, node: Any, store: Store) -> None:
    data = [
        status("first"),
        status("null \0 byte", decorations={"k\0": "v\0"}),
        status("huge severity", severity=2**40),
        status("long file", filename="f" * 300),
        status("someone else's", hostIdentifier="workstation-7"),
        status("lone \udcff surrogate"),
        status("last"),
    ]
    assert post(node, "status", data) == {"node_invalid": False}
    logs = server.admin().get("/api/v1/admin/status-logs", params={"host": "jumpvm"}).json()
    assert sorted(s["message"] for s in logs["status_logs"]) == ["first", "last", "null \0 byte"]
    quarantined = store.rejected()
    assert [(t, kept["message"]) for t, _, _, kept in quarantined] == [
        ("status", "huge severity"),
        ("status", "long file"),
        ("status", "someone else's"),
        ("status", "lone \udcff surrogate"),
    ]
    assert "'severity' is out of range" in quarantined[0][2]
    assert "'filename' of 300 characters is over the store's 255" in quarantined[1][2]
    assert store.count(StatusLog) == 3
    assert post(node, "status", [status("next")]) == {"node_invalid": False}
    assert store.count(StatusLog) == 4


def test_invalid_utf8_costs_only_its_line(server: RunningServer, node: Any, store: Store) -> None:
    body = json.dumps(
        {"node_key": node.node_key, "log_type": "result", "data": [line("1"), line("BAD")]}
    ).encode()
    raw = body.replace(b'"BAD"', b'"\xff\xfe"')
    answer = node.http.post("/api/v1/osquery/log", content=raw)
    assert answer.json() == {"node_invalid": False}
    assert [r["pid"] for r in results(server)] == ["1"]
    [(_, _, reason, kept)] = store.rejected()
    assert "not valid Unicode" in reason
    assert kept["columns"]["pid"] == "\udcff\udcfe"  # the bytes, as surrogateescape reads them


def test_resent_batch_quarantines_once(
    server: RunningServer, node: Any, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """osqueryd resends a batch whose reply it never saw: its quarantined line is not
    quarantined again, and a longer resend adds only what is new."""
    batch = [line("1"), line("2", epoch=-1), line("3")]
    for _ in range(2):
        assert post(node, "result", batch) == {"node_invalid": False}
    assert store.count(RejectedLine) == 1
    logged = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert logged == ["host 2: 1 result log line(s) quarantined (fleetctl data-loss)"]
    longer = [*batch, line("4", counter=1, unixTime=200), line("5", counter=2**64)]
    assert post(node, "result", longer) == {"node_invalid": False}
    assert [r[3]["columns"]["pid"] for r in store.rejected()] == ["2", "5"]
    assert sorted(r["pid"] for r in results(server)) == ["1", "3", "4"]
    assert store.count(ResultRow) == 3


def test_admin_api_and_cli_list_quarantined_lines(server: RunningServer, node: Any) -> None:
    assert post(node, "result", [line("1", epoch=-1)]) == {"node_invalid": False}
    answer = server.admin().get("/api/v1/admin/data-loss", params={"host": "jumpvm"}).json()
    [entry] = answer["rejected"]
    assert (entry["host"], entry["query"], entry["log_type"]) == ("jumpvm", NAME, "result")
    assert "'epoch' is out of range" in entry["reason"]
    assert json.loads(entry["line"]) == line("1", epoch=-1)

    listed = CliRunner().invoke(main, ["data-loss", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    [loss] = json.loads(listed.output)
    assert (loss["host"], loss["query"], loss["kind"]) == ("jumpvm", NAME, "rejected")
    assert loss["detail"].startswith("result line: 'epoch' is out of range")
    only = CliRunner().invoke(main, ["data-loss", "--rejected", "--format", "json"])
    assert only.exit_code == 0, only.output
    assert [json.loads(r["line"]) for r in json.loads(only.output)] == [line("1", epoch=-1)]


def test_hunt_rejected_view_shows_quarantined_lines(server: RunningServer, node: Any) -> None:
    assert post(node, "result", [line("1", counter=-3)]) == {"node_invalid": False}
    answer = server.admin().post(
        "/api/v1/admin/sql", json={"sql": "SELECT host, name, reason, line FROM hunt_rejected"}
    )
    assert answer.status_code == 200, answer.text
    [row] = answer.json()["rows"]
    assert (row["host"], row["name"]) == ("jumpvm", NAME)
    assert "'counter' is out of range" in row["reason"]
    assert json.loads(row["line"]) == line("1", counter=-3)


# -- the last line of defence: data errors validation did not foresee ---------------------


def _refusing_trigger(store: Store, dialect: str) -> tuple[list[str], list[str]]:
    """A trigger that makes the database refuse inserts of rows with a ``boom`` column,
    with the SQLSTATE the column names (PostgreSQL) or "string or blob too big" (SQLite's
    data error); and the statements that drop it."""
    if dialect == "postgresql":
        return (
            [
                """CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.columns ? 'boom' THEN
                        RAISE EXCEPTION 'refused: %', NEW.columns ->> 'pid'
                            USING ERRCODE = NEW.columns ->> 'boom';
                    END IF;
                    RETURN NEW;
                END $$""",
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON result_rows"
                " FOR EACH ROW EXECUTE FUNCTION refuse_boom()",
            ],
            ["DROP TRIGGER refuse_boom ON result_rows", "DROP FUNCTION refuse_boom()"],
        )
    return (
        [
            """CREATE TRIGGER refuse_boom BEFORE INSERT ON result_rows
            WHEN json_extract(NEW.columns, '$.boom') IS NOT NULL
            BEGIN SELECT zeroblob(2000000000); END""",
        ],
        ["DROP TRIGGER refuse_boom"],
    )


@pytest.fixture
def refusing(server: RunningServer, store: Store) -> Iterator[str]:
    dialect = store.engine.dialect.name
    create, drop = _refusing_trigger(store, dialect)
    store.execute(*create)
    yield dialect
    store.execute(*drop)


@pytest.mark.parametrize("sqlstate", ["22023", "54000"])
def test_run_the_database_refuses_is_quarantined_and_the_rest_stored(
    server: RunningServer,
    node: Any,
    store: Store,
    refusing: str,
    sqlstate: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    boom = {"pid": "2", "cmdline": "sh", "boom": sqlstate}
    batch = [
        line("1", name="first"),
        line("2", columns=boom),
        line("3", columns={**boom, "pid": "3"}),  # the same run: refused with it
        line("4", name="last"),
    ]
    assert post(node, "result", batch) == {"node_invalid": False}
    assert any("applying the batch run by run" in r.getMessage() for r in caplog.records)
    assert [r["pid"] for r in results(server, "first")] == ["1"]
    assert [r["pid"] for r in results(server, "last")] == ["4"]
    absent = server.admin().get("/api/v1/admin/results", params={"host": "jumpvm", "query": NAME})
    assert absent.status_code == 404 and "no query" in absent.text  # nothing of it was stored
    quarantined = store.rejected()
    assert [kept for _, _, _, kept in quarantined] == batch[1:3]
    assert all(reason.startswith("the database refused it: ") for _, _, reason, _ in quarantined)
    if refusing == "postgresql":
        assert "refused: 2" in quarantined[0][2]
    else:
        assert "too big" in quarantined[0][2]
    assert post(node, "result", [line("5", counter=1, unixTime=200)]) == {"node_invalid": False}
    assert [r["pid"] for r in results(server)] == ["5"]


@pytest.mark.parametrize("sqlstate", ["40P01", "55P03", "57014"])
def test_database_failures_fail_the_request_and_quarantine_nothing(
    server: RunningServer, node: Any, store: Store, sqlstate: str
) -> None:
    """Deadlock, lock timeout, statement timeout (PostgreSQL), a failing statement
    (SQLite): not the data's fault, so osqueryd must keep the batch and resend it."""
    dialect = store.engine.dialect.name
    if dialect == "postgresql":
        create, drop = _refusing_trigger(store, dialect)
    else:
        create = [
            "CREATE TABLE doomed (x)",
            "CREATE TRIGGER fail_boom BEFORE INSERT ON result_rows"
            " BEGIN INSERT INTO doomed VALUES (1); END",
            "DROP TABLE doomed",  # the trigger now fails every insert: no such table
        ]
        drop = ["DROP TRIGGER fail_boom"]
    batch = [line("1"), line("2", columns={"pid": "2", "boom": sqlstate})]
    store.execute(*create)
    try:
        answer = post(node, "result", batch)
    finally:
        store.execute(*drop)
    assert answer == {"error": answer["error"], "node_invalid": False}
    assert store.count(ResultRow) == 0 and store.count(RejectedLine) == 0
    assert post(node, "result", batch) == {"node_invalid": False}  # the resend lands
    assert sorted(r["pid"] for r in results(server)) == ["1", "2"]
