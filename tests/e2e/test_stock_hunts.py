"""The shipped hunt ``t1559-hunts/shell_stdin_socket`` on a stock agent finds a socat EXEC
shell: osquery lists the shell's socket once, at fd 1 (fds 0 and 1 share it), so a hunt
that asked for fd 0 never saw it. Real server, stock agent, real socat."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetctl.cli.local import LocalFleet
from fleetctl.settings import Settings
from fleetctl.validate import SCENARIOS
from fleetctl.validate.scenarios import Running, free_port
from tests.tables.ipc_world import fd_target

pytestmark = pytest.mark.slow

SOCAT_EXEC = next(s for s in SCENARIOS if s.number == "3")


@pytest.fixture
def stock_fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    fleet = LocalFleet(
        Settings(home=tmp_path / "home", listen=f"127.0.0.1:{free_port()}"),
        engine="embedded",
        stock=True,
    )
    fleet.start()
    fleet.collect()
    yield fleet
    fleet.stop()


def socat_shell(running: Running) -> int:
    """The shell socat started for the connection, once its fds 0 and 1 are the socket."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in running.pids():
            try:
                parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                shell = Path(f"/proc/{parent}/comm").read_text().strip() == "socat" and (
                    Path(f"/proc/{pid}/comm").read_text().strip() in ("sh", "dash", "bash")
                )
            except (OSError, ValueError, IndexError):
                continue
            target = fd_target(pid, 0) or ""
            if shell and target.startswith("socket:[") and fd_target(pid, 1) == target:
                return pid
        time.sleep(0.1)
    raise AssertionError("socat started no shell on the connection")


def test_shell_stdin_socket_finds_a_socat_exec_shell_on_stock_osquery(
    stock_fleet: LocalFleet,
) -> None:
    if SOCAT_EXEC.unavailable():
        pytest.skip(str(SOCAT_EXEC.unavailable()))
    client = stock_fleet.client
    assert client is not None
    running = SOCAT_EXEC.launch()
    try:
        shell = socat_shell(running)
        client.post(
            "/hunts",
            {"name": "socket-shells", "query": "t1559-hunts/shell_stdin_socket", "once": True},
        )
        deadline = time.monotonic() + 30
        rows: list[dict[str, Any]] = []
        while not rows and time.monotonic() < deadline:
            stock_fleet.collect()  # one distributed cycle answers the hunt's run
            answer = client.get("/hunts/socket-shells/results")
            rows = [r for r in answer["rows"] if r["pid"] == str(shell)]
        assert rows, "the hunt did not report the socat EXEC shell"
        # One row per unix or TCP socket the shell holds (socat leaks a few into it);
        # its stdin is the one osquery reports at fd 1.
        assert {r["parent_name"] for r in rows} == {"socat"}
        stdin = f"socket:[{next(r['socket'] for r in rows if r['socket_fd'] == '1')}]"
        assert fd_target(shell, 0) == stdin and {r["family"] for r in rows} == {"1"}
    finally:
        running.cleanup()
