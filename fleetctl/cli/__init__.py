"""The ``fleetctl`` command line: one small module per command group.

Client commands talk to a running server's admin API (see ``fleetctl.cli.client``); the
server and agent commands run in-process. Each command's module is imported only when
that command runs (click's lazy-loading pattern), so a client command such as
``fleetctl query`` starts without loading the server, the store and the table engine.
"""

from __future__ import annotations

import importlib

import click

from fleetctl import __version__

# command name -> "module:attribute"
COMMANDS = {
    "up": "fleetctl.cli.up:up",
    "serve": "fleetctl.cli.serve:serve",
    "db": "fleetctl.cli.db:db",
    "hosts": "fleetctl.cli.hosts:hosts",
    "results": "fleetctl.cli.hosts:results",
    "status-logs": "fleetctl.cli.hosts:status_logs",
    "data-loss": "fleetctl.cli.hosts:data_loss",
    "carves": "fleetctl.cli.hosts:carves",
    "shell": "fleetctl.cli.shell:shell",
    "extension": "fleetctl.cli.extension:extension",
    "packs": "fleetctl.cli.packs:packs",
    "agent": "fleetctl.cli.agent:agent",
    "labels": "fleetctl.cli.labels:labels",
    "sql": "fleetctl.cli.sql:sql",
    "query": "fleetctl.cli.query:query",
    "hunt": "fleetctl.cli.hunts:hunt",
    "findings": "fleetctl.cli.detect:findings",
    "baseline": "fleetctl.cli.detect:baseline",
    "trace": "fleetctl.cli.detect:trace",
    "detect": "fleetctl.cli.detect:detect",
    "validate": "fleetctl.cli.validate:validate",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module_name, attribute = self.lazy[cmd_name].split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command) or command.name != cmd_name:
            raise RuntimeError(f"{self.lazy[cmd_name]} is not the command {cmd_name!r}")
        return command


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="fleetctl")
def main() -> None:
    """Detect abuse of inter-process communication (ATT&CK T1559) across an osquery fleet."""
