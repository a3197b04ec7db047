"""``fleetctl shell``: osqueryi's --json output byte for byte, errors, the prompt."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.engine import osqueryi_json, string_rows
from tests.tables.ipc_world import IpcWorld


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["shell", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_json_is_osqueryi_format() -> None:
    code, out, err = run("SELECT 2 AS zeta, 'x' AS alpha, NULL AS mid, 1.5 AS f", "--json")
    assert (code, err) == (0, "")
    assert out == '[\n  {"alpha":"x","f":"1.5","mid":"","zeta":"2"}\n]\n'


def test_json_multiple_rows_and_statements_share_one_array() -> None:
    code, out, _ = run("SELECT 1 AS a UNION ALL SELECT 2; SELECT 'é\"' AS b", "--json")
    assert code == 0
    assert out == '[\n  {"a":"1"},\n  {"a":"2"},\n  {"b":"é\\""}\n]\n'
    assert json.loads(out) == [{"a": "1"}, {"a": "2"}, {"b": 'é"'}]


def test_empty_result_is_bracket_blank_line_bracket() -> None:
    assert run("SELECT 1 WHERE 0", "--json") == (0, "[\n\n]\n", "")


def test_error_goes_to_stderr_with_status_1() -> None:
    code, out, err = run("SELECT * FROM nosuch", "--json")
    assert (code, out, err) == (1, "[\n\n]\n", "Error: no such table: nosuch\n")
    code, out, err = run("SELECT 1 AS a; SELECT nope FROM processes", "--json")
    assert (code, out, err) == (1, '[\n  {"a":"1"}\n]\n', "Error: no such column: nope\n")
    code, out, err = run("SELECT * FROM nosuch")
    assert (code, out, err) == (1, "", "Error: no such table: nosuch\n")


def test_table_output(world: IpcWorld) -> None:
    pid = world.pid("pipe_reader")
    code, out, _ = run(
        f"SELECT pid, kind, partner_fd FROM process_stdio WHERE pid = {pid} AND fd = 0"
    )
    assert code == 0
    assert "kind" in out and "pipe" in out and str(pid) in out


def test_interactive_statements_and_dot_commands() -> None:
    stdin = (
        "SELECT 1 AS one;\n"
        ".tables process_open\n"
        ".schema uptime\n"
        "SELECT\n  'two' AS two\n;\n"
        ".bogus\n"
        "SELECT * FROM nosuch;\n"
        ".exit\n"
        "SELECT 'never' AS x;\n"
    )
    code, out, err = run("--json", stdin=stdin)
    assert code == 0
    assert out.split("CREATE")[0] == (
        '[\n  {"one":"1"}\n]\n'
        "  => process_open_files\n  => process_open_pipes\n  => process_open_sockets\n"
    )
    assert 'CREATE TABLE "uptime"("days" INTEGER' in out
    assert '[\n  {"two":"two"}\n]\n' in out
    assert "never" not in out
    assert err == (
        'Error: unknown command or invalid arguments: "bogus". Enter ".help" for '
        "help\nError: no such table: nosuch\n"
    )


def test_string_helpers() -> None:
    rows = [{"a": None, "b": 3, "c": 1.5, "d": b"x", "e": True}]
    assert string_rows(rows) == [{"a": "", "b": "3", "c": "1.5", "d": "x", "e": "1"}]
    assert string_rows(rows, ["e", "a"]) == [{"e": "1", "a": ""}]
    assert osqueryi_json([]) == "[\n\n]\n"
    assert osqueryi_json([{"b": 1, "a": None}]) == '[\n  {"a":"","b":"1"}\n]\n'


TWO_ROWS = "SELECT 1 AS n, 'a,b' AS word UNION ALL SELECT 22, 'c'"


def test_output_flags_as_osqueryi() -> None:
    assert run(TWO_ROWS, "--csv") == (0, 'n,word\n1,"a,b"\n22,c\n', "")
    assert run(TWO_ROWS, "--line") == (0, "   n = 1\nword = a,b\n\n   n = 22\nword = c\n", "")
    assert run(TWO_ROWS, "--list") == (0, "n|word\n1|a,b\n22|c\n", "")
    code, out, _ = run(TWO_ROWS)
    assert code == 0 and "word" in out and "a,b" in out


def test_mode_switches_between_statements() -> None:
    stdin = f"{TWO_ROWS};\n.mode line\n{TWO_ROWS};\n.mode list\nSELECT 3 AS x;\n.mode bogus\n"
    code, out, err = run("--csv", stdin=stdin)
    assert code == 0
    assert out == ('n,word\n1,"a,b"\n22,c\n   n = 1\nword = a,b\n\n   n = 22\nword = c\nx\n3\n')
    assert err == "Error: mode should be one of: pretty line csv json list\n"


def test_a_terminal_gets_line_editing_and_history(tmp_path: Path) -> None:
    """A real pseudo-terminal: the statement typed in one run comes back with the up
    arrow in the next, from $FLEETCTL_HOME/shell_history."""
    env = {**os.environ, "FLEETCTL_HOME": str(tmp_path), "TERM": "xterm"}
    first = at_a_terminal(["SELECT 40 + 2 AS answer;\r", ".exit\r"], env)
    assert "42" in first
    assert "SELECT 40 + 2 AS answer;" in (tmp_path / "shell_history").read_text()
    second = at_a_terminal(["\x1b[A\x1b[A\r", ".exit\r"], env)  # up arrow twice, enter
    assert "^[[A" not in second and "42" in second


def at_a_terminal(keys: list[str], env: dict[str, str]) -> str:
    """Run ``fleetctl shell`` on a pty, typing each of ``keys`` after a prompt."""
    controller, terminal = pty.openpty()
    shell = subprocess.Popen(
        [sys.executable, "-m", "fleetctl", "shell"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
        close_fds=True,
    )
    os.close(terminal)
    seen = b""
    try:
        for key in keys:
            seen += read_until(controller, b"osquery> ", seen)
            os.write(controller, key.encode())
        assert shell.wait(timeout=30) == 0
        seen += read_until(controller, None, seen)
    finally:
        shell.kill()
        os.close(controller)
    return seen.decode(errors="replace")


def read_until(fd: int, marker: bytes | None, before: bytes) -> bytes:
    """Read ``fd`` until ``marker`` appears after what was ``before`` (None: to the end)."""
    got = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if marker is not None and marker in got:
            return got
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the shell exited and closed the terminal
            return got
        if not chunk:
            return got
        got += chunk
    assert marker is None, f"no {marker!r} in {(before + got)[-300:]!r}"
    return got
