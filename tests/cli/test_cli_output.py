"""Tables on a terminal fit its width; ``--wide`` shows every cell whole."""

from __future__ import annotations

import io
import re

import click
import pytest

from fleetctl.cli import main
from fleetctl.cli.output import WIDE, render

LONG = "python3 -c " + "x" * 300
ROWS = [{"pid": 4242, "cmdline": LONG, "name": "python3"}]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def sixty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setenv("LINES", "40")


def test_a_terminal_table_fits_the_terminal_and_cuts_long_cells() -> None:
    out = Terminal()
    render(ROWS, ["pid", "cmdline", "name"], out=out)
    lines = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).splitlines()
    assert lines and all(len(line) <= 60 for line in lines)
    assert "pid" in lines[1] and "name" in lines[1]  # no column squeezed out
    assert "…" in out.getvalue() and "4242" in out.getvalue() and "python3" in out.getvalue()


def test_wide_folds_instead_so_every_character_shows() -> None:
    out = Terminal()
    with click.Context(main) as ctx:
        ctx.meta[WIDE] = True
        render(ROWS, ["pid", "cmdline", "name"], out=out)
    assert "…" not in out.getvalue()
    assert "".join(out.getvalue().split()).count("x") >= 300


def test_a_pipe_gets_whole_cells_without_terminal_cuts() -> None:
    out = io.StringIO()
    render(ROWS, ["pid", "cmdline", "name"], out=out)
    assert "…" not in out.getvalue()
    assert "".join(out.getvalue().split()).count("x") >= 300
