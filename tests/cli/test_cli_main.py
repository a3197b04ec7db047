"""The command line's own wiring: every command is reachable, and client commands
start without importing the server, the store or the table engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from fleetctl.cli import COMMANDS, ENVIRONMENT, SUMMARIES, main


def test_every_command_resolves_and_shows_its_help() -> None:
    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0 and "Usage: " in result.output, (name, result.output)


def test_top_level_help_lists_every_command_whole_without_importing_one() -> None:
    code = (
        "import sys; from fleetctl.cli import main; main(['--help'], standalone_mode=False);"
        "print(sorted(m for m in sys.modules if m.startswith('fleetctl.cli.')"
        " and m not in ('fleetctl.cli.examples', 'fleetctl.cli.groups')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    help_text, loaded = out.rsplit("\n", 2)[0], out.rsplit("\n", 2)[1]
    assert loaded == "[]"  # no command module: help costs an import of the package only
    flat = " ".join(help_text.split())
    for name, summary in SUMMARIES.items():
        assert f"{name} {summary}" in flat, name
    assert "..." not in help_text.split("Options:", 1)[1]  # (the usage line has its own)
    for variable, _ in ENVIRONMENT:
        assert variable in help_text
    assert "_FLEETCTL_COMPLETE=bash_source" in help_text


def test_the_listed_environment_variables_are_the_ones_read() -> None:
    """Every FLEETCTL_* variable an option reads is listed in the help, and no other."""
    read = {"FLEETCTL_HOME"}  # read by the settings module, not by an option
    ctx = click.Context(main)

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                read.add(envvar)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    walk(sub)

    walk(main)
    assert read == {variable for variable, _ in ENVIRONMENT}


def test_group_help_never_cuts_a_summary() -> None:
    for name in COMMANDS:
        result = CliRunner().invoke(main, [name, "--help"])
        assert "..." not in result.output.split("Commands:")[-1], name


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


def test_client_commands_get_their_client_from_the_options_and_environment(
    tmp_path: Path,
) -> None:
    env = {"FLEETCTL_HOME": str(tmp_path), "FLEETCTL_SERVER": "https://127.0.0.1:1"}
    result = CliRunner().invoke(main, ["hosts", "list", "--token", "t"], env=env)
    assert result.exit_code == 1, result.output
    assert "Error: cannot reach https://127.0.0.1:1" in result.output
    result = CliRunner().invoke(main, ["hosts", "list"], env={"FLEETCTL_HOME": str(tmp_path)})
    assert result.exit_code == 1 and "no server to talk to" in result.output, result.output


def test_a_client_command_checks_its_arguments_before_looking_for_a_server(
    tmp_path: Path,
) -> None:
    args = ["hunt", "create", "x", "--sql", "SELECT 1", "--once", "--every", "1h"]
    result = CliRunner().invoke(main, args, env={"FLEETCTL_HOME": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert "give exactly one of --cron, --every and --once" in result.output


def test_shell_completion_reaches_lazy_commands_and_their_subcommands() -> None:
    def complete(words: str, index: int) -> str:
        env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(index)}
        env["_FLEETCTL_COMPLETE"] = "bash_complete"
        return subprocess.run(
            [sys.executable, "-m", "fleetctl"], env=env, capture_output=True, text=True
        ).stdout

    assert complete("fleetctl h", 1).split() == ["plain,hosts", "plain,hunt"]
    assert complete("fleetctl hunt cr", 2).split() == ["plain,create"]
