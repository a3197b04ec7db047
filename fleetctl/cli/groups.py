"""The command groups' help: each subcommand's whole first paragraph, never cut with
"..." (click's default cuts a summary at the terminal's width)."""

from __future__ import annotations

import click


def summary(command: click.Command) -> str:
    """A command's first help paragraph on one line."""
    text = command.short_help or (command.help or "").split("\n\n", 1)[0]
    return " ".join(text.split())


class Group(click.Group):
    """A click group that lists its subcommands with their whole summaries."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, summary(command)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
