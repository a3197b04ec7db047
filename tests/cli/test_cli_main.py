"""The command line's own wiring: every command is reachable, and client commands
start without importing the server, the store or the table engine."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from fleetctl.cli import COMMANDS, main


def test_every_command_resolves_and_shows_its_help() -> None:
    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Usage: " in result.output, (name, result.output)


def test_unknown_command_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["quary"])
    assert result.exit_code == 2 and "No such command 'quary'" in result.output


def test_client_commands_do_not_load_the_server() -> None:
    code = (
        "import sys; from fleetctl.cli import main; "
        "main.get_command(None, 'query'); main.get_command(None, 'sql'); "
        "print(sorted(m for m in ('sqlalchemy', 'uvicorn', 'apsw', 'alembic') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
