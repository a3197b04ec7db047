"""``fleetctl detect --learn``, ``findings`` and ``hosts`` through CliRunner against a
real server (SQLite and PostgreSQL): learning refuses what looks like an attack and
says so, and where each host stands with learning is always visible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from fleetctl.cli import main
from tests.conftest import RunningServer
from tests.detection.reporting import ReportingHost, fifo_shell, wait_for

API = "/api/v1/admin"


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(invoke(*args, "--format", "json").stdout)


def test_detect_learn_refuses_an_attack_until_it_is_accepted(server: RunningServer) -> None:
    host = ReportingHost(server)
    host.report(*fifo_shell(2000, 100, "/dev/shm/.c", interactive=True))
    key = "dash|33|python3.11|systemd|fifo+file"

    learning = invoke("detect", "--learn").stdout
    assert "refused: not learned, each is a finding (seen during learning)" in learning
    assert "learn one with `fleetctl detect --learn --accept KEY`" in learning
    rows = as_json("detect", "--learn")  # again: the same refusal, nothing new learned
    (refused,) = [r for r in rows if r["action"] == "refused"]
    assert (refused["key"], refused["severity"], refused["pids"]) == (key, "critical", [2000])
    assert "FIFO or socket in a shared temp directory: /dev/shm/.c" in refused["reasons"]
    learned = {r["key"]: r["new"] for r in rows if r["action"] == "learned"}
    assert learned["bash|500|sshd|sshd|pty"] is False  # the base tree, learned the first time
    assert key not in learned
    (finding,) = as_json("findings", "list")
    assert as_json("findings", "list", "--until", "2000-01-01T00:00:00Z") == []
    assert as_json("findings", "list", "--since", "1h", "--until", "now") == [finding]
    assert (finding["key"], finding["status"], finding["seen_during_learning"]) == (
        key,
        "open",
        True,
    )
    assert finding["pid"] == 2000 and finding["severity"] == "critical"
    table = invoke("findings", "list").stdout  # 200 columns: the cell wraps after "during"
    assert "seen during" in table and "learning" in table
    shown = invoke("findings", "show", finding["id"]).stdout
    assert "occurrences, newest first" in shown and "seen during learning" in shown
    assert "fd 0 fifo /dev/shm/.c" in shown

    accepted = invoke("detect", "--learn", "--accept", key, "--accept", "no|such|key")
    assert "accepted by --accept: baseline entries" in accepted.stdout
    assert "refused" not in accepted.stdout
    assert "--accept no|such|key: no host showed this path key" in accepted.stderr
    assert key in invoke("baseline", "export").stdout
    added = invoke("baseline", "add", "parent_child", "parent=cron", "child=sh", "note=nightly")
    assert added.exit_code == 0, added.output  # the README's example: named by its pair
    assert '"name":"cron-sh"' in invoke("baseline", "list", "--format", "json").stdout.replace(
        " ", ""
    )
    (after,) = as_json("findings", "list")
    assert after["status"] == "suppressed"
    history = as_json("findings", "show", finding["id"])[0]["history"]
    assert (history[-1]["to"], history[-1]["by"], history[-1]["note"]) == (
        "suppressed",
        "admin",
        "accepted while learning",
    )
    # Accepted: a new process on the path is no new occurrence.
    host.report(*fifo_shell(2001, 101, "/dev/shm/.d", interactive=True))
    invoke("detect")
    assert as_json("findings", "list")[0]["occurrences"] == 1


def test_accept_without_learn_is_refused(server: RunningServer) -> None:
    result = CliRunner().invoke(main, ["detect", "--accept", "a|b"])
    assert result.exit_code == 2 and "--accept goes with --learn" in result.output


def test_hosts_show_their_learning_and_an_empty_list_says_who_learns(
    server: RunningServer,
) -> None:
    ReportingHost(server).report()
    (host,) = as_json("hosts", "list")
    assert host["detection"].startswith("learning until ")
    assert host["detection"] == f"learning until {host['learning_until']}"
    assert "learning until" in invoke("hosts", "list").stdout
    assert as_json("hosts", "show", "jumpvm")[0]["host"]["detection"] == host["detection"]

    empty = invoke("findings", "list")
    assert (
        f"no findings yet: 1 host(s) still learning, until {host['learning_until']}" in empty.stderr
    )
    assert invoke("findings", "list", "--format", "json").stdout.strip() == "[]"

    invoke("detect", "--learn")
    (baselined,) = as_json("hosts", "list")
    assert baselined["detection"] == f"baseline {baselined['baselined_at']}"
    assert baselined["learning_until"] is None
    assert "still learning" not in invoke("findings", "list").stderr


def test_a_host_past_its_window_is_judging(db_url: str, tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "home", db_url, learning_window=1)
    try:
        host = ReportingHost(server)
        admin = server.admin()
        wait_for(
            lambda: admin.get(f"{API}/hosts").json()["hosts"][0]["detection"],
            lambda state: state == "judging",
            timeout=5,
        )
        # Judging: a new path is judged on its full score, with no learning mark.
        host.report(*fifo_shell(2000, 100, "/srv/q/a"))
        (finding,) = wait_for(
            lambda: admin.get(f"{API}/findings", params={"min_severity": "medium"}).json()[
                "findings"
            ],
            lambda found: len(found) == 1,
        )
        assert (finding["pid"], finding["seen_during_learning"]) == (2000, False)
    finally:
        server.stop()


def test_one_learning_window_default_everywhere() -> None:
    """serve, up, the server's settings, its detection worker and the detector all
    default to the one window the settings declare."""
    from fleetctl.cli.serve import serve
    from fleetctl.cli.up import up
    from fleetctl.detection import Detector
    from fleetctl.server.detection_service import DetectionService
    from fleetctl.settings import DEFAULT_LEARNING_WINDOW, Settings
    from fleetctl.timeutil import parse_duration

    for command in (serve, up):
        option = next(p for p in command.params if p.name == "learning_window")
        assert parse_duration(str(option.default)) == DEFAULT_LEARNING_WINDOW, command.name
    assert Settings().learning_window == DEFAULT_LEARNING_WINDOW
    assert Detector().learning_window == DEFAULT_LEARNING_WINDOW
    assert DetectionService.learning_window == DEFAULT_LEARNING_WINDOW
