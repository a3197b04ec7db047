"""The command groups' help: each subcommand's whole first paragraph, never cut with
"..." (click's default cuts a summary at the terminal's width); and a group that runs
one of its subcommands when none is named."""

from __future__ import annotations

from typing import Any

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


class DefaultGroup(Group):
    """A group that runs its ``default`` subcommand when the arguments name none, with
    those arguments (``fleetctl audit --since 1d`` is ``fleetctl audit list --since 1d``);
    the group's own --help still shows the group."""

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        named = bool(args) and (args[0] in self.commands or args[0] in ctx.help_option_names)
        return super().parse_args(ctx, args if named else [self.default, *args])
