"""Fixtures for agent tests: a real TLS fleet server that can restart on its port,
a config the tests choose, and agents with their own state directories."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from fleetctl.agent import Agent, AgentOptions
from fleetctl.cli.client import ssl_context
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import Host

HOST = "agent-under-test"


@dataclass
class Exchange:
    """One request the agent made and what became of it."""

    path: str
    body: dict[str, Any]
    answer: dict[str, Any] | None  # None: the answer never reached the agent


class RecordingTransport(httpx.HTTPTransport):
    """The agent's real HTTPS transport, recording every exchange; ``lose_log_answers``
    drops that many answers to log requests after the server has processed them."""

    def __init__(self, ca: str, lose_log_answers: int = 0) -> None:
        super().__init__(verify=ssl_context(ca))
        self.exchanges: list[Exchange] = []
        self.lose_log_answers = lose_log_answers

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.read() or b"{}")
        response = super().handle_request(request)
        content = response.read()
        answer = json.loads(content) if content.strip() else {}
        if request.url.path.endswith("/log") and self.lose_log_answers > 0:
            self.lose_log_answers -= 1
            self.exchanges.append(Exchange(request.url.path, body, None))
            raise httpx.ReadError("connection lost before the answer", request=request)
        self.exchanges.append(Exchange(request.url.path, body, answer))
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def logs(self, log_type: str = "result") -> list[Exchange]:
        return [
            e
            for e in self.exchanges
            if e.path.endswith("/log") and e.body.get("log_type") == log_type
        ]


class FleetServer:
    """``fleetctl serve`` in a thread on 127.0.0.1; ``restart()`` keeps home, DB and port."""

    def __init__(self, home: Path, db: str, port: int = 0) -> None:
        from fleetctl.server.bootstrap import prepare
        from fleetctl.server.runner import ServerThread, bind
        from fleetctl.settings import Settings

        self.home, self.db = home, db
        self._sock = bind("127.0.0.1", port)
        self.port = self._sock.getsockname()[1]
        self.settings = Settings(home=home, listen=f"127.0.0.1:{self.port}", db=db)
        prepared = prepare(self.settings)
        self.thread = ServerThread(self.settings, prepared, self._sock)
        self.thread.start()
        self.url = prepared.server_url
        self.ca = str(prepared.tls.ca)
        self.secret_path = home / "enroll_secret"
        self.token = json.loads((home / "context.json").read_text())["token"]
        self._admin: httpx.Client | None = None
        self.running = True

    def admin_get(self, path: str, **params: Any) -> Any:
        if self._admin is None:
            self._admin = httpx.Client(
                base_url=self.url,
                verify=ssl_context(self.ca),
                timeout=30,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        response = self._admin.get(f"/api/v1/admin{path}", params=params)
        return response.json()

    def rows(self, query: str, host: str = HOST) -> list[dict[str, Any]]:
        """Rows the server holds for ``query`` now (empty if it has none)."""
        answer = self.admin_get("/results", host=host, query=query)
        return list(answer.get("rows", []))

    def queries(self, host: str = HOST) -> dict[str, dict[str, Any]]:
        answer = self.admin_get(f"/hosts/{host}")
        return {q["name"]: q for q in answer.get("queries", [])}

    def data_loss(self) -> list[dict[str, Any]]:
        return list(self.admin_get("/data-loss")["data_loss"])

    def rekey_host(self, host: str = HOST) -> None:
        """Give the host a node key nobody holds: its agent now gets ``node_invalid``."""
        engine = make_engine(self.db)
        try:
            with session_scope(make_sessionmaker(engine)) as session:
                session.execute(
                    update(Host).where(Host.host_identifier == host).values(node_key_hash="0" * 64)
                )
        finally:
            engine.dispose()
        self.thread.state.reload_node_keys()

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.running:
            self.thread.stop()
            self._sock.close()
            self.running = False

    def restart(self) -> FleetServer:
        self.stop()
        return FleetServer(self.home, self.db, self.port)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    path = tmp_path / "fleet.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def fleet(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FleetServer]:
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    servers = [FleetServer(home, sqlite_url)]
    yield servers[0]
    servers[0].stop()


@pytest.fixture
def any_fleet(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FleetServer]:
    """A FleetServer on SQLite, then on PostgreSQL."""
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    server = FleetServer(home, db_url)
    yield server
    server.stop()


@pytest.fixture
def served_config(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The config document every host gets; tests fill in schedule and packs."""
    config: dict[str, Any] = {
        "options": {
            "pack_delimiter": "_",
            "logger_tls_period": 1,
            "logger_tls_backoff_max": 2,
            "distributed_interval": 1,
            "schedule_epoch": 0,
        },
        "decorators": {"load": ["SELECT hostname AS hostname FROM system_info;"]},
        "schedule": {},
        "packs": {},
    }

    def config_for(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return json.loads(json.dumps(config))

    monkeypatch.setattr("fleetctl.server.osquery_api.config_for", config_for)
    return config


AgentFactory = Callable[..., Agent]


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[AgentFactory]:
    """Agents against a FleetServer; every one still running is stopped afterwards."""
    started: list[Agent] = []

    def make(server: FleetServer, state: str = "state", engine: Any = None, **kw: Any) -> Agent:
        flags = {
            "host_identifier": "specified",
            "specified_identifier": HOST,
            "config_refresh": 1,
            "tls_enroll_max_attempts": 3,
            "tls_enroll_max_interval": 1,
            **kw.pop("flags", {}),
        }
        options = AgentOptions(
            server=server.url,
            enroll_secret_path=server.secret_path,
            state_dir=tmp_path / state,
            ca=server.ca,
            flags=flags,
            **kw,
        )
        agent = Agent(options, engine)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        if not agent.stop_event.is_set():
            agent.stop()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.2)


SPAWNED: list[subprocess.Popen[bytes]] = []


def spawn_sleep(seconds: int = 300) -> subprocess.Popen[bytes]:
    """A child the scheduled queries can see, with a pipe to us on its stdout (ended,
    reaped and its pipe closed when the test ends)."""
    child = subprocess.Popen(["sleep", str(seconds)], stdout=subprocess.PIPE)
    SPAWNED.append(child)
    return child


@pytest.fixture(autouse=True)
def _end_spawned_children() -> Iterator[None]:
    yield
    while SPAWNED:
        child = SPAWNED.pop()
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def children_sql(columns: str = "pid, parent, cmdline") -> str:
    return f"SELECT {columns} FROM processes WHERE parent = {os.getpid()} AND name = 'sleep'"
