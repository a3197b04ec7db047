"""The whole pipeline on this machine: server thread, shipped packs, a local agent.

``fleetctl up`` and ``fleetctl validate`` both need a real server on loopback with the
packs applied and an agent of this host enrolled over osquery's TLS protocol; this is
that, started and stopped in one place.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass, field
from typing import Any

from fleetctl.agent import Agent, AgentOptions, EngineError, select_engine
from fleetctl.cli.client import AdminClient, Context
from fleetctl.errors import FleetError
from fleetctl.packs.loader import load_file, pack_files, shipped_packs_dir
from fleetctl.packs.model import apply_request
from fleetctl.packs.validate import validate_paths
from fleetctl.server.bootstrap import Prepared, prepare
from fleetctl.server.runner import ServerThread, bind
from fleetctl.settings import Settings

AGENT_FLAGS = {
    "config_refresh": 10,
    "logger_tls_period": 1,
    "distributed_interval": 5,
    "host_identifier": "hostname",
}


def shipped_pack_payload() -> dict[str, Any]:
    """The shipped packs as an apply request (validated: they must be)."""
    report = validate_paths([shipped_packs_dir()])
    if report.errors:
        first = report.errors[0]
        raise FleetError(f"shipped packs do not validate: {first.file}: {first.message}")
    return apply_request(p for f in pack_files([shipped_packs_dir()]) for p in load_file(f))


@dataclass
class LocalFleet:
    settings: Settings
    engine: str = "auto"
    interval: int | None = None
    #: The agent as a stock osqueryd without this project's extension tables.
    stock: bool = False
    prepared: Prepared | None = None
    server: ServerThread | None = None
    client: AdminClient | None = None
    agent: Agent | None = None
    applied: list[dict[str, Any]] = field(default_factory=list)

    def start(self) -> None:
        """Start the server, apply the packs, create the agent (not yet collecting)."""
        host, port = self.settings.host_port
        self.prepared = prepare(self.settings)
        try:
            sock = bind(host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise FleetError(
                    f"{self.settings.listen} is in use (is `fleetctl serve` "
                    "running?); pick another with --listen"
                ) from exc
            raise
        self.server = ServerThread(self.settings, self.prepared, sock)
        self.server.start()
        ca = str(self.prepared.tls.ca)
        token = json.loads(self.settings.context_path.read_text())["token"]
        self.client = AdminClient(Context(self.prepared.server_url, token, ca))
        self.applied = self.client.post("/packs/apply", shipped_pack_payload())["applied"]
        try:
            query_engine = select_engine(self.engine, stock=self.stock)
        except EngineError as exc:
            raise FleetError(exc.message) from exc
        self.agent = Agent(
            AgentOptions(
                server=self.prepared.server_url,
                enroll_secret_path=self.settings.home / "enroll_secret",
                state_dir=self.settings.home / "agent",
                ca=ca,
                flags=AGENT_FLAGS,
                interval=self.interval,
            ),
            query_engine,
        )

    def collect(self, timeout: float = 45) -> None:
        """One full cycle: every scheduled query once, delivered to the server."""
        assert self.agent is not None
        if not self.agent.run_once(timeout=timeout):
            raise FleetError(
                f"{self.agent.buffer.count()} log lines could not be delivered; they stay buffered"
            )

    def judged(self, timeout: float = 60) -> None:
        """Wait until detection has judged everything delivered so far."""
        assert self.server is not None
        detection = self.server.state.detection
        if detection is not None and not detection.wait_judged(timeout):
            raise FleetError(f"detection did not catch up within {timeout:g} s")

    def learn(self) -> dict[str, Any]:
        """Two collection cycles, then this host's paths as its explicit baseline (what
        looks like an attack on its own is refused, not learned); the ``/detect`` answer."""
        assert self.client is not None
        self.collect()
        self.collect()
        self.judged()
        answer: dict[str, Any] = self.client.post("/detect", {"learn": True})
        return answer

    def findings(self, since: int) -> list[dict[str, Any]]:
        """Open medium-or-worse findings with an occurrence first seen at ``since`` or
        later, each listing those occurrences (``occurrences_since``)."""
        assert self.client is not None
        found: list[dict[str, Any]] = self.client.get(
            "/findings", status="open", min_severity="medium", occurred_since=since
        )["findings"]
        return found

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
        if self.client is not None:
            self.client.close()
        if self.server is not None:
            self.server.stop()
