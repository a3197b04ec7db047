"""``fleetctl agent`` with nothing but what ``fleetctl serve`` left in $FLEETCTL_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from fleetctl.cli import main
from tests.agent.conftest import FleetServer, children_sql, spawn_sleep, wait_for


def test_once_uses_the_flag_file_and_delivers_everything(
    fleet: FleetServer, served_config: dict[str, Any], tmp_path: Path
) -> None:
    me = os.getpid()
    served_config["schedule"] = {
        "me": {"query": f"SELECT pid, name FROM processes WHERE pid = {me}", "interval": 60}
    }
    result = CliRunner().invoke(
        main,
        [
            "agent",
            "--once",
            "--engine",
            "embedded",
            "--state-dir",
            str(tmp_path / "cli"),
            "--host-identifier",
            "cli-host",
        ],
    )
    assert result.exit_code == 0, result.output
    assert [r["pid"] for r in fleet.rows("me", host="cli-host")] == [str(me)]


def test_once_without_a_server_keeps_the_lines_and_fails(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s\n")
    flags = tmp_path / "osquery.flags"
    flags.write_text(
        "--tls_enroll_max_attempts=1\n--config_tls_max_attempts=1\n"
        "--distributed_tls_max_attempts=1\n"
    )
    result = CliRunner(env={"FLEETCTL_HOME": str(tmp_path / "none")}).invoke(
        main,
        [
            "agent",
            "--once",
            "--engine",
            "embedded",
            "--server",
            "https://127.0.0.1:9",
            "--enroll-secret-path",
            str(secret),
            "--state-dir",
            str(tmp_path / "s"),
            "--flagfile",
            str(flags),
        ],
    )
    assert result.exit_code == 1
    assert "stay buffered" in result.output


def test_the_agent_process_runs_until_sigterm(
    fleet: FleetServer, served_config: dict[str, Any], tmp_path: Path
) -> None:
    served_config["schedule"] = {"children": {"query": children_sql(), "interval": 1}}
    child = spawn_sleep()
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fleetctl",
            "agent",
            "--engine",
            "embedded",
            "--state-dir",
            str(tmp_path / "proc"),
            "--host-identifier",
            "proc-host",
        ],
        env={**os.environ, "FLEETCTL_HOME": str(fleet.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: fleet.rows("children", host="proc-host"),
            timeout=30,
            what="rows from the agent process",
        )
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    finally:
        agent.kill()
        agent.communicate()  # reaps it and closes its pipes
    assert [r["pid"] for r in fleet.rows("children", host="proc-host")] == [str(child.pid)]


def test_a_killed_agent_process_resumes_from_its_state_directory(
    fleet: FleetServer, served_config: dict[str, Any], tmp_path: Path
) -> None:
    served_config["schedule"] = {"children": {"query": children_sql(), "interval": 1}}
    command = [
        sys.executable,
        "-m",
        "fleetctl",
        "agent",
        "--engine",
        "embedded",
        "--state-dir",
        str(tmp_path / "crash"),
        "--host-identifier",
        "crash-host",
    ]
    env = {**os.environ, "FLEETCTL_HOME": str(fleet.home)}
    first, second = spawn_sleep(), None
    agent = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: fleet.rows("children", host="crash-host"), timeout=30, what="rows")
        agent.kill()  # no chance to clean up
        agent.wait()
        second = spawn_sleep()
        agent = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        wait_for(
            lambda: len(fleet.rows("children", host="crash-host")) == 2,
            timeout=30,
            what="rows after the restart",
        )
    finally:
        agent.kill()
        agent.wait()
        for child in (first, second):
            if child is not None:
                child.kill()
                child.wait()
    queries = fleet.queries(host="crash-host")
    assert queries["children"]["counter"] == 1  # a diff on the old state, not a new baseline
    assert fleet.data_loss() == []
    assert fleet.admin_get("/hosts/crash-host")["host"]["enroll_count"] == 1
