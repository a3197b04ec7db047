"""Detection end to end: real server, shipped packs, a real agent on this host, real
processes. After an explicit baseline, an IPC-fed shell becomes a finding with its
evidence (benign look-alikes are covered scenario by scenario in test_scenarios)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.agent import Agent, AgentOptions
from fleetctl.agent.engines import EmbeddedEngine
from fleetctl.cli.local import shipped_pack_payload
from tests.conftest import RunningServer

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(server: RunningServer, tmp_path: Path) -> Iterator[tuple[RunningServer, Agent, Any]]:
    admin = server.admin()
    assert admin.post("/api/v1/admin/packs/apply", json=shipped_pack_payload()).status_code == 200
    agent = Agent(
        AgentOptions(
            server=server.url,
            enroll_secret_path=server.settings.home / "enroll_secret",
            state_dir=tmp_path / "agent",
            ca=server.ca,
            flags={"host_identifier": "hostname", "logger_tls_period": 1},
        ),
        EmbeddedEngine(),
    )
    assert agent.run_once(timeout=30)
    answer = admin.post("/api/v1/admin/detect", json={"learn": True})
    assert answer.status_code == 200 and answer.json()["learned"] is True
    yield server, agent, admin
    agent.stop()


def collect_and_wait(
    agent: Agent, admin: Any, pid: int, since: int, timeout: float = 20
) -> list[Any]:
    """Collect until a medium+ finding has an occurrence of process ``pid`` first seen
    at ``since`` or later (or time out); the findings that do."""
    deadline = time.monotonic() + timeout
    while True:
        assert agent.run_once(timeout=30)
        time.sleep(0.6)  # the detection worker settles 0.3 s after the batch
        listed = admin.get(
            "/api/v1/admin/findings",
            params={"min_severity": "medium", "occurred_since": since},
        ).json()["findings"]
        found = [f for f in listed if any(o["pid"] == pid for o in f["occurrences_since"])]
        if found or time.monotonic() > deadline:
            return found


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def test_fifo_command_channel_becomes_a_finding(
    fleet: tuple[RunningServer, Agent, Any], tmp_path: Path
) -> None:
    """Scenario 7: a shell whose stdin is a named FIFO opened read-write."""
    _, agent, admin = fleet
    fifo = tmp_path / ".c"
    os.mkfifo(fifo)
    since = int(time.time())
    shell = subprocess.Popen(
        ["sh", "-c", f"exec sh <>{fifo} >{tmp_path / 'out'} 2>&1"], start_new_session=True
    )
    try:
        with open(fifo, "w") as channel:
            channel.write("sleep 30\n")
            channel.flush()
        time.sleep(0.5)
        findings = collect_and_wait(agent, admin, shell.pid, since)
        assert findings, "no finding for the FIFO-fed shell"
        finding = findings[0]
        assert any("fifo" in r.lower() or "named pipe" in r.lower() for r in finding["reasons"])
        shown = admin.get(f"/api/v1/admin/findings/{finding['id']}").json()
        (occurrence,) = [o for o in shown["occurrences"] if o["pid"] == shell.pid]
        channels = occurrence["evidence"]["channels"]
        assert any(c["kind"] == "fifo" and str(fifo) in (c.get("target") or "") for c in channels)
        assert occurrence["evidence"]["lineage"][0]["pid"] == shell.pid
    finally:
        kill_group(shell)
