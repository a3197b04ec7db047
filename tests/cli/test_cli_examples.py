"""Every command's help has examples, and every example parses as that command's
arguments and options (an option renamed without its example fails here)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.cli.examples import EXAMPLES


def leaf_commands() -> dict[str, click.Command]:
    ctx = click.Context(main)
    found: dict[str, click.Command] = {}

    def walk(command: click.Command, path: str) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, f"{path} {name}".strip())
        else:
            found[path] = command

    walk(main, "")
    return found


def test_every_command_has_examples_and_no_example_is_orphaned() -> None:
    assert set(EXAMPLES) == set(leaf_commands())


@pytest.mark.parametrize("path", sorted(EXAMPLES))
def test_examples_parse_as_their_command(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the files an example names exist here
    command = leaf_commands()[path]
    for example in EXAMPLES[path]:
        words = shlex.split(example.split(" > ")[0])
        for word in words:
            if word.endswith("/") and not word.startswith(("/", "-")):
                (tmp_path / word).mkdir(exist_ok=True)
            elif word.endswith((".json", ".yaml", ".conf")) and not word.startswith("-"):
                (tmp_path / word).touch()
        assert words[: 1 + path.count(" ") + 1] == ["fleetctl", *path.split()], example
        args = words[1 + path.count(" ") + 1 :]
        with command.make_context(path, args) as ctx:
            assert ctx.command is command


def test_examples_show_in_the_help() -> None:
    result = CliRunner().invoke(main, ["hunt", "create", "--help"])
    assert "Examples:\n    fleetctl hunt create fifo-shells" in result.output
