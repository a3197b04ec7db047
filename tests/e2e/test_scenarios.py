"""Every validation scenario end to end: real server, real agent, real processes.

Attacks must become medium-or-worse findings naming one of their processes; benign
look-alikes must not. Every scenario runs twice: with this project's extension tables,
and with the agent as a stock osqueryd (``--stock``: osquery's own tables only), where
every attack must be found too, as the README's table of stock osquery says. Every run
has two CPU burners beside it: detection must not depend on a quiet machine. One server
and agent per mode serve the whole module (learning this host once, as ``fleetctl
validate`` does).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl.cli.local import LocalFleet
from fleetctl.settings import Settings
from fleetctl.validate import SCENARIOS, Scenario, cpu_burners, run_scenarios
from fleetctl.validate.scenarios import Running, free_port, unix_listening
from tests.conftest import HOST_WIDE_LOCK

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["extension", "stock"])
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalFleet]:
    stock = request.param == "stock"
    home: Path = tmp_path_factory.mktemp(f"validate-home-{request.param}")
    local = LocalFleet(
        Settings(home=home, listen=f"127.0.0.1:{free_port()}"), engine="embedded", stock=stock
    )
    local.start()
    assert local.client is not None
    # Learning this host judges every process on it: it takes its turn with the host-wide
    # tests of other checkouts, whose attacks would otherwise be learned as normal. (A
    # module fixture is set up before the per-test turn is taken.)
    with HOST_WIDE_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            local.learn()
            [host] = local.client.get("/hosts")["hosts"]
            reported = {q["name"] for q in local.client.get(f"/hosts/{host['id']}")["queries"]}
            assert "pack_ipc-telemetry_stdio_channels" in reported
            assert ("pack_ipc-telemetry-extension_process_stdio" in reported) is not stock
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    yield local
    local.stop()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"{s.number}" for s in SCENARIOS])
def test_scenario(fleet: LocalFleet, scenario: Scenario) -> None:
    missing = scenario.missing_tools()
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI installs every scenario tool, but {missing} is missing")
    reason = scenario.unavailable()
    if reason:
        pytest.skip(reason)
    client = fleet.client
    assert client is not None
    with cpu_burners(2):  # detection must not depend on a quiet machine
        [outcome] = run_scenarios([scenario], fleet)
    expected = "detected" if scenario.attack else "quiet"
    assert outcome.verdict == expected, outcome.row()
    if scenario.attack:
        shown = client.get(f"/findings/{outcome.finding}")
        occurrence = next(o for o in shown["occurrences"] if o["pid"] == outcome.pid)
        assert occurrence["evidence"]["lineage"][0]["pid"] == outcome.pid, "with its lineage"
        assert occurrence["reasons"] and shown["finding"]["reasons"], "a finding says why"


def refused_client(run: Running) -> None:
    """A client of a unix socket that is bound but not listening: refused, it exits."""
    path = run.workdir / "bound.sock"
    bound = socket.socket(socket.AF_UNIX)
    bound.bind(str(path))
    run.cleanups.append(bound.close)
    assert not unix_listening(path), "bound is not listening"
    run.spawn(["socat", "-", f"UNIX-CONNECT:{path}"], stdin=subprocess.PIPE)


def test_a_miss_names_the_scenario_processes_that_exited(fleet: LocalFleet) -> None:
    """An attack chain that never formed (its client refused) is missed, and the miss
    says which process died and how, rather than only that nothing was found."""
    if shutil.which("socat") is None:
        pytest.skip("missing socat")
    refused = Scenario("x", "refused socat client", True, ("socat",), refused_client)
    [outcome] = run_scenarios([refused], fleet, cycles=1)
    assert outcome.verdict == "missed", outcome.row()
    assert outcome.detail.startswith("no finding on its processes after 1 collection cycles")
    assert re.search(r"; socat pid \d+ exited with 1$", outcome.detail), outcome.detail


def test_a_unix_server_counts_as_listening_only_once_it_listens(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        assert path.exists() and not unix_listening(path)
        server.listen()
        assert unix_listening(path)
    assert not unix_listening(tmp_path / "other.sock")
