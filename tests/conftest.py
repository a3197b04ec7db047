"""Shared fixtures: a migrated store on SQLite and PostgreSQL, and a real TLS server.

Store tests take the ``db_url`` fixture and run once per backend. PostgreSQL is the
machine's server at 127.0.0.1:5432; each test session gets its own database. Under
``CI=true`` a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text

from fleetctl.cli.client import ssl_context
from storage import analyst_role
from storage.base import metadata
from storage.engine import make_engine
from storage.migrate import upgrade

PG_ADMIN_URL = os.environ.get("FLEETCTL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# Tests that judge every process of this host (scenario runs, live detection) see each
# other's processes, and the console's browser tests start Chromium's (a dozen, talking
# over pipes and sockets); under xdist they share one worker so they never run at once.
HOST_WIDE = ("tests/e2e/", "tests/detection/test_live_", "tests/console/test_browser_")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups from the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = item.nodeid.replace("\\", "/")
        if path.startswith(HOST_WIDE):
            item.add_marker(pytest.mark.this_host)
            item.add_marker(pytest.mark.xdist_group("this_host"))


# Host-wide tests of every test run on this machine (other checkouts, CI) take turns.
HOST_WIDE_LOCK = Path(tempfile.gettempdir()) / "fleetctl-host-wide-tests.lock"


@pytest.fixture(autouse=True)
def _host_wide_tests_share_a_worker(request: pytest.FixtureRequest) -> Iterator[None]:
    """Host-wide tests run one at a time on this machine: in one xdist worker (failing
    loudly if xdist stopped grouping, as with pytest 9.2, pytest-xdist#1386), and under a
    file lock that test runs of other checkouts take too."""
    if not request.node.get_closest_marker("this_host"):
        yield
        return
    grouped = (
        request.config.getvalue("loadgroup") if os.environ.get("PYTEST_XDIST_WORKER") else None
    )
    if grouped:
        assert request.node.nodeid.endswith("@this_host"), (
            "xdist did not put the host-wide tests on one worker; see the pytest pin in "
            "pyproject.toml"
        )
    with HOST_WIDE_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc)


@pytest.fixture(scope="session")
def world() -> Iterator[Any]:
    """One set of real IPC processes (pipes, FIFOs, sockets) per test session, shared by
    the table, engine and extension accuracy tests."""
    from tests.tables.ipc_world import start_world

    running, tmp = start_world()
    try:
        yield running
    finally:
        running.stop()
        tmp.cleanup()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, with its analyst role
    (as ``fleetctl db upgrade`` makes it). Roles outlive databases: the role is dropped
    after the database."""
    problem = _pg_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true: {problem}")
        pytest.skip(f"PostgreSQL not available: {problem}")
    name = f"fleetctl_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    provisioned = analyst_role.provision(engine)
    engine.dispose()
    assert not provisioned.pending_sql, provisioned.pending_sql
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{provisioned.role}"')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "fleet.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _truncate_pg(url: str) -> None:
    """Empty every table but ``store_secrets``, which holds the analyst role's password.
    As a superuser with triggers off: the audit trail's refuse a TRUNCATE."""
    engine = make_engine(url)
    kept = {"store_secrets"}
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables if t.name not in kept)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty store: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "fleet.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_database")
    _truncate_pg(url)
    return url


class RunningServer:
    """A real TLS server on 127.0.0.1 in a thread, with its home directory."""

    def __init__(self, home: Path, db: str, **settings_kw: object) -> None:
        from fleetctl.server.bootstrap import prepare
        from fleetctl.server.runner import ServerThread, bind
        from fleetctl.settings import Settings

        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        self.settings = Settings(home=home, listen=f"127.0.0.1:{port}", db=db, **settings_kw)  # type: ignore[arg-type]
        self.prepared = prepare(self.settings)
        self.thread = ServerThread(self.settings, self.prepared, sock)
        self.thread.start()
        self.url = self.prepared.server_url
        self.ca = str(self.prepared.tls.ca)
        self.secret = (home / "enroll_secret").read_text().strip()
        import json

        self.token = json.loads((home / "context.json").read_text())["token"]
        self.clients: list[httpx.Client] = []

    def node(self, identifier: str = "jumpvm", uuid: str = "uuid-jumpvm", **kw: str) -> Any:
        from tests.osquery_node import OsqueryNode

        node = OsqueryNode(self.url, self.ca, self.secret, identifier, uuid, **kw)
        self.clients.append(node.http)
        return node

    def query(self, stmt: Any) -> list[Any]:
        """Rows of a SQLAlchemy statement, read from the server's store directly."""
        from storage.engine import make_sessionmaker, session_scope

        engine = make_engine(self.settings.db_url)
        try:
            with session_scope(make_sessionmaker(engine)) as session:
                return list(session.execute(stmt).all())
        finally:
            engine.dispose()

    def replica(self, home: Path) -> RunningServer:
        """A second server on the same store, with its own home (PostgreSQL only: the
        store already holds the enroll secret)."""
        home.mkdir()
        (home / "enroll_secret").write_text(self.secret + "\n")
        return RunningServer(home, self.settings.db_url)

    def admin(self) -> httpx.Client:
        """An admin API client with the token from the server's context file."""
        return self.client(self.token)

    def client(self, token: str | None = None) -> httpx.Client:
        """A client of this server: with ``token`` as its bearer token, or with none (as
        a browser calls it); closed when the server stops."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(
            base_url=self.url, verify=ssl_context(self.ca), timeout=30, headers=headers
        )
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:  # closed clients let the server shut down at once
            client.close()
        self.thread.stop()


@pytest.fixture
def server(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    srv = RunningServer(home, db_url)
    yield srv
    srv.stop()


REPO = Path(__file__).resolve().parents[1]


def _outside_the_repository(event: str, args: tuple[Any, ...]) -> None:
    """Refuse a test's read of a file beside the repository (a sibling folder): a
    clone with nothing beside it must pass, so what a test needs lives in ``tests/``."""
    if event != "open" or not isinstance(args[0], str | bytes | os.PathLike):
        return
    path = os.path.abspath(os.fsdecode(args[0]))
    if path.startswith(str(REPO.parent) + os.sep) and not path.startswith(str(REPO) + os.sep):
        raise PermissionError(f"a test read {path}, outside the repository; copy it to tests/")


sys.addaudithook(_outside_the_repository)
