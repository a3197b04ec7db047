"""Engine: osquery SQL over the tables, types, errors, laziness and pid pushdown."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.engine import Engine, QueryError
from fleetctl.tables import TABLES, Scan, TableSpec, _proc
from tests.tables.ipc_world import IpcWorld


class Spy:
    """Wraps table generators to record the constraints each call received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, set[Any]]]] = []

    def wrap(self, spec: TableSpec) -> TableSpec:
        def generate(constraints: Any, scan: Scan) -> list[dict[str, Any]]:
            self.calls.append((spec.name, {k: set(v) for k, v in constraints.items()}))
            return spec.generate(constraints, scan)

        return TableSpec(
            spec.name, spec.columns, generate, spec.pushdown, spec.description, spec.extension
        )

    def tables(self, name: str) -> list[dict[str, set[Any]]]:
        return [c for n, c in self.calls if n == name]


@pytest.fixture
def spy() -> Spy:
    return Spy()


@pytest.fixture
def engine(spy: Spy) -> Engine:
    return Engine({name: spy.wrap(spec) for name, spec in TABLES.items()})


def test_typed_values_and_column_order(engine: Engine) -> None:
    result = engine.query(
        f"SELECT name, pid, parent, on_disk FROM processes WHERE pid = {os.getpid()}"
    )
    assert result.columns == ["name", "pid", "parent", "on_disk"]
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert result.rows == [{"name": comm, "pid": os.getpid(), "parent": os.getppid(), "on_disk": 1}]


def test_select_star_omits_hidden_columns_but_they_can_be_named(engine: Engine) -> None:
    star = engine.query("SELECT * FROM processes WHERE pid = 1")
    assert "upid" not in star.columns and "cgroup_path" in star.columns
    assert star.columns == [c.name for c in TABLES["processes"].visible_columns]
    hidden = engine.query("SELECT upid, elevated_token FROM processes WHERE pid = 1")
    assert hidden.rows == [{"upid": None, "elevated_token": None}]
    alias = engine.query("SELECT date_time = datetime AS same FROM time")
    assert alias.rows == [{"same": 1}]


def test_only_named_tables_are_generated(engine: Engine, spy: Spy) -> None:
    engine.query("SELECT * FROM uptime")
    assert [name for name, _ in spy.calls] == ["uptime"]


def test_pid_equality_and_in_are_pushed_down(engine: Engine, spy: Spy) -> None:
    engine.query("SELECT pid FROM processes WHERE pid = 1")
    engine.query("SELECT pid FROM processes WHERE pid IN (1, 2, 3)")
    engine.query("SELECT pid FROM process_stdio WHERE pid IN (SELECT 1 UNION SELECT 2)")
    engine.query("SELECT pid FROM processes WHERE pid > 1 LIMIT 1")
    assert spy.tables("processes") == [{"pid": {1}}, {"pid": {1, 2, 3}}, {}]
    assert spy.tables("process_stdio") == [{"pid": {1, 2}}]


def test_join_pushes_partner_pids_and_caches_per_query(
    world: IpcWorld, engine: Engine, spy: Spy
) -> None:
    reader = world.pid("pipe_reader")
    result = engine.query(
        "SELECT p.pid, p.fd, w.name AS partner_name, p.partner_fd "
        "FROM process_open_pipes p JOIN processes w ON w.pid = p.partner_pid "
        f"WHERE p.pid = {reader}"
    )
    assert result.rows == [{"pid": reader, "fd": 0, "partner_name": "sleep", "partner_fd": 1}]
    assert spy.tables("process_open_pipes") == [{"pid": {reader}}]
    assert spy.tables("processes") == [{"pid": {world.pid("pipe_writer")}}]


def test_each_fd_directory_is_read_once_per_query(
    world: IpcWorld, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    original = _proc.read_fd_links

    def counting(pid: int, proc_root: str = "/proc") -> dict[int, str] | None:
        reads.append(pid)
        return original(pid, proc_root)

    monkeypatch.setattr(_proc, "read_fd_links", counting)
    engine.query(
        "SELECT s.pid, s.fd, s.kind, p.partner_pid, u.peer_pid, o.socket "
        "FROM process_stdio s "
        "LEFT JOIN process_open_pipes p ON p.pid = s.pid AND p.fd = s.fd "
        "LEFT JOIN unix_socket_peers u ON u.pid = s.pid AND u.fd = s.fd "
        "LEFT JOIN process_open_sockets o ON o.pid = s.pid AND o.fd = s.fd"
    )
    assert reads, "the query must have read descriptors"
    assert len(reads) == len(set(reads))


def test_unix_client_to_server_join_in_sql(world: IpcWorld, engine: Engine) -> None:
    """The join stock osquery cannot do: a unix client's stdin to the server process."""
    client = world.pid("unix_client")
    result = engine.query(
        "SELECT s.pid, s.kind, s.target, srv.pid AS server_pid, srv.cmdline "
        "FROM process_stdio s JOIN processes srv ON srv.pid = s.partner_pid "
        f"WHERE s.pid = {client} AND s.fd = 0"
    )
    [row] = result.rows
    assert (row["kind"], row["target"], row["server_pid"]) == (
        "unix",
        str(world.unix_path),
        world.pid("unix_server"),
    )


def test_null_partner_columns_are_sql_null(world: IpcWorld, engine: Engine) -> None:
    pid = world.pid("fifo_rw")
    rows = engine.query(
        f"SELECT partner_pid, partner_pid IS NULL AS unpartnered "
        f"FROM process_open_pipes WHERE pid = {pid}"
    ).rows
    assert rows == [{"partner_pid": None, "unpartnered": 1}]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM nosuch", "no such table: nosuch"),
        ("SELECT nocol FROM processes", "no such column: nocol"),
        ("SELEC 1", 'near "SELEC": syntax error'),
        ("SELECT * FROM processes WHERE", "incomplete input"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "not authorized"),
    ],
)
def test_errors_read_like_osquery(engine: Engine, sql: str, message: str) -> None:
    with pytest.raises(QueryError) as raised:
        engine.query(sql)
    assert raised.value.message == message == str(raised.value)


def test_rows_before_a_runtime_error_are_kept(engine: Engine) -> None:
    with pytest.raises(QueryError) as raised:
        engine.query("SELECT 1 AS a; SELECT * FROM nosuch")
    assert raised.value.partial is not None
    assert raised.value.partial.rows == [{"a": 1}]


def test_a_failing_generator_becomes_a_query_error() -> None:
    def broken(constraints: Any, scan: Scan) -> list[dict[str, Any]]:
        raise OSError(24, "Too many open files")

    spec = TABLES["uptime"]
    engine = Engine({"uptime": TableSpec("uptime", spec.columns, broken)})
    with pytest.raises(QueryError, match=r"OSError: \[Errno 24\] Too many open files"):
        engine.query("SELECT * FROM uptime")


def test_multiple_statements_share_one_result(engine: Engine) -> None:
    result = engine.query("SELECT 1 AS a; SELECT 2 AS b;")
    assert result.columns == ["a", "b"]
    assert result.rows == [{"a": 1}, {"b": 2}]
    assert engine.query("").rows == []


def test_osquery_functions_and_version_collation(engine: Engine) -> None:
    row = engine.query(
        "SELECT split('a,b,,c', ',', 2) AS s, regex_match('sh -c id', '-c (\\w+)', 1) AS r, "
        "regex_split('a1b22c', '[0-9]+', 1) AS rs, to_base64('hi') AS b, "
        "from_base64('aGk=') AS f, conditional_to_base64('ok') AS c, sha1('abc') AS h, "
        "'5.10.0' > '5.9.2' COLLATE version AS newer"
    ).rows[0]
    assert row == {
        "s": "c",
        "r": "id",
        "rs": "b",
        "b": "aGk=",
        "f": "hi",
        "c": "ok",
        "h": "a9993e364706816aba3e25717850c26c9cd0d89d",
        "newer": 1,
    }
    assert engine.query(
        "SELECT count(*) AS n FROM osquery_info WHERE version >= '0.0.10'"
    ).rows == [{"n": 1}]


def test_columns_and_schema(engine: Engine, spy: Spy) -> None:
    assert engine.columns("SELECT pid, name FROM processes") == [
        ("pid", "INTEGER"),
        ("name", "TEXT"),
    ]
    assert spy.calls == []  # describing a query generates nothing
    assert engine.schema("process_stdio").startswith('CREATE TABLE "process_stdio"("pid" INTEGER')
    with pytest.raises(QueryError, match="no such table: x"):
        engine.schema("x")
    assert "processes" in engine.table_names()


@pytest.fixture(scope="module")
def plain_engine() -> Iterator[Engine]:
    yield Engine()


def test_every_table_answers_select_star(plain_engine: Engine) -> None:
    for name in TABLES:
        result = plain_engine.query(f"SELECT * FROM {name}")
        assert result.columns == [c.name for c in TABLES[name].visible_columns]
