"""Triage answers on real processes: the real server, the shipped packs and the embedded
agent on this host, as ``fleetctl validate`` runs them. A channel is set up and
collected first, then a shell starts on it and runs a command; the finding's triage
must name the process at the other end, the user, that the channel came first, and the
command the shell ran next."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.cli.local import LocalFleet
from fleetctl.settings import Settings
from fleetctl.validate import cpu_burners
from fleetctl.validate.scenarios import SH, Running, free_port, wait_unix_listening
from tests.detection import live

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    """A server and agent of this host that learned it (new paths are judged)."""
    local = LocalFleet(
        Settings(home=tmp_path / "home", listen=f"127.0.0.1:{free_port()}"), engine="embedded"
    )
    local.start()
    try:
        local.learn()
        yield local
    finally:
        local.stop()


@pytest.fixture
def run() -> Iterator[Running]:
    """Processes and paths of one test, under /tmp, removed by recorded pid and path;
    two CPU burners beside them: the answers must not depend on a quiet machine."""
    running = Running(Path(tempfile.mkdtemp(prefix="fleetctl-triage-", dir="/tmp")))
    try:
        with cpu_burners(2):
            yield running
    finally:
        running.cleanup()


def triage_of(fleet: LocalFleet, pid: int, since: int) -> dict[str, dict[str, Any]]:
    """Collect until an occurrence of ``pid`` is a finding; its triage answers by key."""
    assert fleet.client is not None
    for _ in range(3):
        fleet.collect()
        fleet.judged()
        for finding in fleet.findings(since):
            for occurrence in finding["occurrences_since"]:
                if occurrence["pid"] == pid:
                    shown = fleet.client.get(
                        f"/findings/{finding['id']}", occurrence=occurrence["id"]
                    )
                    assert shown["triage"]["pid"] == pid
                    return {a["key"]: a for a in shown["triage"]["answers"]}
    raise AssertionError(f"no finding for pid {pid}")


def collected_then_a_second_later(fleet: LocalFleet) -> None:
    """One collection (the channel is in the store from now), then a few seconds, so
    a process started after it has a later start time than the channel's rows."""
    fleet.collect()
    time.sleep(2.5)  # start times are boot time plus ticks: a second either way


def commands_ran(answers: dict[str, dict[str, Any]], cmdline: str) -> bool:
    return any(
        r["role"] == "child process" and r.get("cmdline") == cmdline
        for r in answers["next"]["evidence"]
    )


def test_a_shell_reading_a_fifo_another_process_holds(fleet: LocalFleet, run: Running) -> None:
    fifo = run.workdir / "f"
    os.mkfifo(fifo)
    writer = run.spawn([SH, "-c", f"exec sleep 600 3<>{fifo}"])  # holds the FIFO open
    live.wait_until(lambda: live.fd_target(writer.pid, 3) == str(fifo), what="the writer")
    collected_then_a_second_later(fleet)
    since = int(time.time())
    shell = run.spawn([SH, "-c", f"exec {SH} <{fifo}"])
    with open(fifo, "w") as channel:
        channel.write("sleep 300\n")
    live.find(shell.pid, "sleep", "300")

    got = triage_of(fleet, shell.pid, since)

    first = got["initiator"]
    assert first["status"] == "answered", first
    assert first["answer"].startswith(f"sleep[{writer.pid}]:"), first["answer"]
    assert {"initiator", "hop 1"} <= {r["role"] for r in first["evidence"]}
    user = got["user"]
    assert user["answer"].startswith(f"uid {os.getuid()}"), user
    before = got["preceded"]
    assert before["status"] == "answered" and before["answer"].startswith("yes:"), before
    assert any(r["object"] == str(fifo) for r in before["evidence"])
    assert got["prevalence"]["status"] == "answered"
    assert commands_ran(got, "sleep 300"), got["next"]
    complete = got["telemetry"]
    assert complete["status"] == "answered" and complete["answer"].startswith("yes:"), complete


def test_a_shell_socat_runs_for_a_unix_socket_client(fleet: LocalFleet, run: Running) -> None:
    sock = run.workdir / "ipc.sock"
    server = run.spawn(["socat", f"UNIX-LISTEN:{sock},fork", f"EXEC:{SH}"])
    wait_unix_listening(sock)
    collected_then_a_second_later(fleet)
    since = int(time.time())
    client = run.spawn(["socat", "-", f"UNIX-CONNECT:{sock}"], stdin=subprocess.PIPE)
    assert client.stdin is not None
    client.stdin.write(b"sleep 301\n")
    client.stdin.flush()
    live.find(server.pid, "sleep", "301")
    shell = live.find(server.pid, os.path.basename(SH))

    got = triage_of(fleet, shell, since)

    first = got["initiator"]
    assert first["status"] == "answered", first
    # The shell's socketpair leads to socat's handler, whose unix socket leads to the
    # client: the process that sent the command, with its own lineage (this test).
    assert first["answer"].startswith(f"socat[{client.pid}]:"), first["answer"]
    assert "python" in first["answer"].split("its lineage:")[1]
    before = got["preceded"]
    assert before["status"] == "answered" and before["answer"].startswith("yes:"), before
    assert any(r["object"] == str(sock) for r in before["evidence"])
    assert got["user"]["answer"].startswith(f"uid {os.getuid()}")
    assert commands_ran(got, "sleep 301"), got["next"]
    assert got["telemetry"]["answer"].startswith("yes:"), got["telemetry"]
