"""Learning cannot be poisoned, end to end: real server, shipped packs, a real agent on
this host and real attack processes already running when the host learns.

An attack present while a host learns is a finding marked seen during learning, and a
later process on the same path is a new occurrence of it, found as any other; and
``fleetctl validate`` still finds its scenario when the same kind of attack ran before
it learned this host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.cli.local import LocalFleet
from fleetctl.settings import Settings
from fleetctl.validate import SCENARIOS
from fleetctl.validate.scenarios import Running, free_port, socat_unix_exec

pytestmark = pytest.mark.slow
FIFO_SHELL = next(s for s in SCENARIOS if s.number == "7")  # a shell reading a FIFO


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    """This host enrolled in a fresh server: in its learning window, no baseline yet."""
    local = LocalFleet(
        Settings(home=tmp_path / "home", listen=f"127.0.0.1:{free_port()}"), engine="embedded"
    )
    local.start()
    yield local
    local.stop()


def occurrences_since(fleet: LocalFleet, since: int, pid: int) -> list[dict[str, Any]]:
    """Collection cycles (three at most) until a medium+ finding has an occurrence of
    ``pid`` first seen at ``since`` or later; those findings."""
    assert fleet.client is not None
    found: list[dict[str, Any]] = []
    for _ in range(3):
        fleet.collect()
        fleet.judged()
        found = [
            f
            for f in fleet.client.get("/findings", min_severity="medium", occurred_since=since)[
                "findings"
            ]
            if any(o["pid"] == pid for o in f["occurrences_since"])
        ]
        if found:
            break
    return found


def shell_of(running: Running) -> int:
    """The FIFO-fed shell of scenario 7 (it replaced the ``sh -c`` that started it)."""
    return running.procs[0].pid


def test_an_attack_running_while_the_host_learns_is_no_baseline(fleet: LocalFleet) -> None:
    assert fleet.client is not None
    first = FIFO_SHELL.launch()
    try:
        early = shell_of(first)
        learned = fleet.learn()
        refusals = [r for r in learned["refused"] if early in r["pids"]]
        assert refusals, learned["refused"]
        assert not any(early in r.get("pids", []) for r in learned["learned_keys"])
        finding_id = refusals[0]["finding"]
        shown = fleet.client.get(f"/findings/{finding_id}")
        assert shown["finding"]["seen_during_learning"] is True
        (before,) = [o for o in shown["occurrences"] if o["pid"] == early]
        assert before["seen_during_learning"] is True
        early_fifo = before["evidence"]["channels"][0]["target"]
        assert early_fifo.startswith(("/dev/shm/.c-", "/tmp/"))

        since = int(time.time())
        second = FIFO_SHELL.launch()
        try:
            later = shell_of(second)
            found = occurrences_since(fleet, since, later)
            assert [f["id"] for f in found] == [finding_id], found
        finally:
            second.cleanup()
        after = fleet.client.get(f"/findings/{finding_id}")
        by_pid = {o["pid"]: o for o in after["occurrences"]}
        assert by_pid[later]["seen_during_learning"] is False
        assert by_pid[later]["evidence"]["channels"][0]["target"] != early_fifo
        # The first incident keeps its own evidence.
        assert by_pid[early]["evidence"]["channels"][0]["target"] == early_fifo
        assert by_pid[early]["evidence"]["lineage"][0]["pid"] == early
    finally:
        first.cleanup()


def _sh_under(running: Running) -> bool:
    """Whether the socat listener has forked and exec'd its shell for the client."""
    for pid in running.pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("sh", "dash", "bash"):
                return True
    return False


def test_validate_finds_scenario_3_beside_the_same_attack_running_before(
    tmp_path: Path,
) -> None:
    if shutil.which("socat") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI installs socat, but it is missing")
        pytest.skip("socat is not installed")
    running = Running(Path(tempfile.mkdtemp(prefix="fleetctl-test-socat-")))
    try:
        socat_unix_exec(running)  # socat UNIX-LISTEN ... EXEC:/bin/sh, and a client
        deadline = time.monotonic() + 10
        while not _sh_under(running):
            assert time.monotonic() < deadline, "socat never started its shell"
            time.sleep(0.1)
        done = subprocess.run(
            [
                str(Path(sys.executable).with_name("fleetctl")),
                "validate",
                "--scenario",
                "3",
                "--format",
                "json",
            ],
            env={**os.environ, "FLEETCTL_HOME": str(tmp_path / "home")},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        (row,) = json.loads(done.stdout)
        assert (row["scenario"], row["result"]) == ("3", "detected"), row
    finally:
        running.cleanup()
