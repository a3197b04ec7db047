"""Every ``fleetctl`` command in the README's ``sh`` blocks runs, in order, against a real
server with an enrolled and fed host, so the README cannot drift from the CLI.

A command that cannot run in a test is listed in ``SKIPPED`` with the reason; a command
the README gains is run unless it is listed there.
"""

from __future__ import annotations

import re
import shlex
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.timeutil import parse_time
from tests.conftest import RunningServer
from tests.server.test_hunting_views import SHELL, SHELL_STDIN, readme_sql_examples

README = Path(__file__).resolve().parents[2] / "README.md"
HOST = "web-1"  # the README's example host
OTHER_HOST = "web-2"  # the other member of its manual label
PROC = "pack_ipc-telemetry_process_lineage"
STDIO = "pack_ipc-telemetry-extension_process_stdio"
# osquery's incident-response pack in its .conf form, which `packs convert` takes
CONF_PACK = Path(__file__).resolve().parents[1] / "packs" / "fixtures" / "incident-response.conf"
README_PG_URL = "postgresql://postgres@127.0.0.1:5432/fleet"
README_FINDING = "3f2a9c"  # stands for the fed host's finding (ids are hashes)

SKIPPED = {
    "fleetctl up --once": "judges every process of this host (tests/cli/test_cli_up.py runs it)",
    "fleetctl serve": "serves until stopped",
    "fleetctl serve --db " + README_PG_URL: "serves until stopped",
    "fleetctl shell": "an interactive prompt",
    "fleetctl login --user alice": "asks for a password, and puts alice's token in the context "
    "the later commands use (tests/cli/test_cli_users.py signs in)",
    "fleetctl agent": "collects until stopped",
    "fleetctl agent --stock": "collects until stopped",
    "fleetctl extension --socket /var/osquery/osquery.em": "serves a real osqueryd's socket",
    "fleetctl validate --burners 2": "judges every process of this host, for minutes "
    "(tests/e2e runs every scenario)",
}

# The exit status a command is documented to have, where it is not 0.
EXIT_CODES: dict[str, int] = {
    # the README's host has minutes of history and no event publisher: coverage fails
    "fleetctl coverage": 1,
    "fleetctl coverage --targets platform:linux --retention 90d --format markdown": 1,
    "fleetctl coverage --format html": 1,
}


def readme_commands() -> list[list[str]]:
    """The README's commands, in order, as argument lists starting with ``fleetctl``: every
    line of a ``sh`` block that starts with ``fleetctl `` or ``.venv/bin/fleetctl `` (or
    runs it after ``&&``), with
    its continuation lines (a trailing backslash or an open quote) and without its comment."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.MULTILINE | re.DOTALL):
        lines = block.splitlines()
        while lines:
            line = lines.pop(0)
            if " && .venv/bin/fleetctl " in line:  # the quick start: install, then run
                line = ".venv/bin/fleetctl " + line.split(" && .venv/bin/fleetctl ", 1)[1]
            if not line.startswith(("fleetctl ", ".venv/bin/fleetctl ")):
                continue
            text = line
            while True:
                try:
                    words = shlex.split(text.replace("\\\n", " "), comments=True)
                except ValueError:  # a quote closes on a later line
                    text += "\n" + lines.pop(0)
                    continue
                if text.endswith("\\"):
                    text += "\n" + lines.pop(0)
                    continue
                break
            commands.append(["fleetctl", *words[1:]])
    return commands


COMMANDS = readme_commands()


def named(command: list[str]) -> str:
    return shlex.join(command)


def snapshot(name: str, t: int, rows: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "name": name,
        "hostIdentifier": HOST,
        "unixTime": t,
        "epoch": 0,
        "counter": 0,
        "numerics": False,
        "action": "snapshot",
        "snapshot": rows,
    }


@pytest.fixture
def fleet(
    tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningServer]:
    """A server on SQLite with the shipped packs and two hosts answering live queries as
    osqueryd would; ``web-1`` reported a shell reading a FIFO in /dev/shm under python3
    (a finding)."""
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # the files the README's commands name
    shutil.copy(CONF_PACK, tmp_path)
    shutil.copy(sqlite_template, tmp_path / "fleet.db")
    server = RunningServer(home, f"sqlite:///{tmp_path / 'fleet.db'}")
    run(["fleetctl", "packs", "apply"])  # as `fleetctl serve` does on a new store
    node, other = server.node(HOST, f"uuid-{HOST}"), server.node(OTHER_HOST, f"uuid-{OTHER_HOST}")
    node.enroll()
    other.enroll()
    t = int(parse_time("2026-11-27T14:00:00Z"))
    node.log("result", [snapshot(PROC, t, [SHELL]), snapshot(STDIO, t, [SHELL_STDIN])])
    node.log(
        "status",
        [{"unixTime": t, "severity": 0, "filename": "config.cpp", "line": 1, "message": "ok"}],
    )
    detection = server.thread.state.detection
    assert detection is not None and detection.wait_judged(30)
    stop = threading.Event()
    answering = [threading.Thread(target=answer_queries, args=(n, stop)) for n in (node, other)]
    for thread in answering:
        thread.start()
    yield server
    stop.set()
    for thread in answering:
        thread.join()
    server.stop()


def answer_queries(node: Any, stop: threading.Event) -> None:
    """Poll ``distributed/read`` as osqueryd does and answer every query with no rows."""
    while not stop.wait(0.2):
        queries = node.call("/distributed/read").get("queries", {})
        if queries:
            node.call(
                "/distributed/write",
                {
                    "queries": {q: [] for q in queries},
                    "statuses": {q: 0 for q in queries},
                    "messages": {q: "" for q in queries},
                },
            )


def run(command: list[str], meaning: dict[str, str] | None = None) -> None:
    """Run a README command, each word in ``meaning`` standing for its value there."""
    args = [(meaning or {}).get(word, word) for word in command[1:]]
    result = CliRunner().invoke(main, args)
    expected = EXIT_CODES.get(named(command), 0)
    assert result.exit_code == expected, f"{named(command)}\n{result.output}"


def test_every_readme_command_runs(fleet: RunningServer) -> None:
    [finding] = fleet.admin().get("/api/v1/admin/findings").json()["findings"]
    meaning = {README_FINDING: finding["id"][:6]}
    ran = []
    for command in COMMANDS:
        if named(command) in SKIPPED or README_PG_URL in command:
            continue
        run(command, meaning)
        ran.append(command)
    assert ran


def test_the_readme_postgresql_commands_run(
    pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETCTL_HOME", str(tmp_path / "home"))
    commands = [c for c in COMMANDS if README_PG_URL in c and named(c) not in SKIPPED]
    assert commands
    for command in commands:
        run(command, {README_PG_URL: pg_database})


def test_every_readme_command_is_run_or_skipped_with_a_reason() -> None:
    assert set(SKIPPED) <= {named(c) for c in COMMANDS}, "SKIPPED names a command no longer shown"


def test_the_sql_examples_are_those_the_hunting_views_test_checks() -> None:
    """Their answers on both databases are checked in tests/server/test_hunting_views.py."""
    sql = [c[2] for c in COMMANDS if c[1] == "sql" and not c[2].startswith("-")]
    assert sql == readme_sql_examples()
