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
from fleetctl.cli.examples import add_examples

# (section, [(command name, "module:attribute", one-line summary)]). The summaries are
# what ``fleetctl --help`` prints without importing a single command module; a test keeps
# each equal to its command's own first help line.
SECTIONS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    (
        "Run",
        (
            ("up", "fleetctl.cli.up:up", "Server, packs and an agent for this host, in one."),
            (
                "serve",
                "fleetctl.cli.serve:serve",
                "Serve osquery's TLS remote API and the admin API.",
            ),
            (
                "agent",
                "fleetctl.cli.agent:agent",
                "Enroll this host and run its schedule like osqueryd.",
            ),
            (
                "extension",
                "fleetctl.cli.extension:extension",
                "Serve this project's tables to a running osqueryd.",
            ),
            (
                "shell",
                "fleetctl.cli.shell:shell",
                "Run osquery SQL on this host, as osqueryi does.",
            ),
            ("db", "fleetctl.cli.db:db", "Database schema, retention and the analyst role."),
        ),
    ),
    (
        "Fleet",
        (
            ("hosts", "fleetctl.cli.hosts:hosts", "Enrolled hosts and their detection state."),
            (
                "results",
                "fleetctl.cli.hosts:results",
                "Rows of a query that existed on a host at a time.",
            ),
            (
                "status-logs",
                "fleetctl.cli.hosts:status_logs",
                "osqueryd status log lines of a host, newest first.",
            ),
            (
                "data-loss",
                "fleetctl.cli.hosts:data_loss",
                "What the store lacks: gaps, epoch changes, quarantined lines.",
            ),
            ("carves", "fleetctl.cli.hosts:carves", "File carve sessions and their progress."),
            (
                "coverage",
                "fleetctl.cli.coverage:coverage",
                "DET0493 telemetry coverage per host and platform; exit 1 on a gap.",
            ),
            ("packs", "fleetctl.cli.packs:packs", "Check, convert and manage osquery packs."),
            (
                "labels",
                "fleetctl.cli.labels:labels",
                "Host labels: a SQL membership query or a host list.",
            ),
        ),
    ),
    (
        "Access",
        (
            (
                "login",
                "fleetctl.cli.login:login",
                "Sign in: get a token of your user and keep it in the context file.",
            ),
            (
                "users",
                "fleetctl.cli.users:users",
                "Who may use the admin API, and with which role.",
            ),
            (
                "tokens",
                "fleetctl.cli.tokens:tokens",
                "Named admin API tokens, each with a role and an expiry.",
            ),
            (
                "secrets",
                "fleetctl.cli.secrets:secrets",
                "Enroll secrets: named, each able to put its hosts in a label, rotated or revoked.",
            ),
            (
                "audit",
                "fleetctl.cli.audit:audit",
                "Who changed what and ran which query through the admin API.",
            ),
        ),
    ),
    (
        "Hunt",
        (
            ("sql", "fleetctl.cli.sql:sql", "Read-only SQL over the hunting views (hunt_*)."),
            ("query", "fleetctl.cli.query:query", "Run SQL on the targeted hosts now."),
            (
                "hunt",
                "fleetctl.cli.hunts:hunt",
                "Scheduled hunts over the fleet, offline hosts too.",
            ),
        ),
    ),
    (
        "Detect",
        (
            (
                "findings",
                "fleetctl.cli.detect:findings",
                "New IPC-spawned execution paths and every incident on them.",
            ),
            (
                "trace",
                "fleetctl.cli.detect:trace",
                "A process's ancestry and descendants with IPC edges, at a time.",
            ),
            (
                "detect",
                "fleetctl.cli.detect:detect",
                "Judge hosts now, replay history, or learn a baseline.",
            ),
            (
                "baseline",
                "fleetctl.cli.detect:baseline",
                "What detection treats as normal: entries and learned paths.",
            ),
            (
                "validate",
                "fleetctl.cli.validate:validate",
                "Run the IPC-abuse scenarios and benign look-alikes.",
            ),
        ),
    ),
)
COMMANDS = {name: target for _, rows in SECTIONS for name, target, _ in rows}
SUMMARIES = {name: summary for _, rows in SECTIONS for name, _, summary in rows}

ENVIRONMENT = (
    ("FLEETCTL_HOME", "the server's files and the client context (default: the user data dir)"),
    ("FLEETCTL_DB", "database URL of serve, up and db (default: SQLite under FLEETCTL_HOME)"),
    ("FLEETCTL_ANALYST_DB", "PostgreSQL URL of a hand-made analyst role for sql"),
    ("FLEETCTL_SERVER", "admin API URL of client commands (default: from the context file)"),
    ("FLEETCTL_TOKEN", "admin API token (default: from the context file)"),
    ("FLEETCTL_PASSWORD", "the password login signs in with (default: asked for)"),
    ("FLEETCTL_CA", "CA bundle that verifies the server (default: from the context file)"),
)


# Modules whose exceptions are database errors, said in one line by ``LazyGroup.invoke``.
DATABASE_ERRORS = ("sqlalchemy", "psycopg", "sqlite3", "storage.database")


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use; its help lists them, in
    sections, from the summaries above without importing any."""

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
        add_examples(command, cmd_name)
        return command

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a database error becomes one line, never a traceback."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not type(exc).__module__.startswith(DATABASE_ERRORS):
                raise
            from storage.database import DatabaseProblem, describe  # only on an error

            said = str(exc) if isinstance(exc, DatabaseProblem) else describe(exc)
            raise click.ClickException(said) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        for section, rows in SECTIONS:
            with formatter.section(section):
                formatter.write_dl([(name, summary) for name, _, summary in rows])

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Environment"):
            formatter.write_dl(list(ENVIRONMENT))
        formatter.write_paragraph()
        formatter.write_text(
            "`fleetctl COMMAND --help` shows a command's options and examples."
            ' Shell completion: eval "$(_FLEETCTL_COMPLETE=bash_source fleetctl)"'
            " (zsh_source, fish_source for the other shells)."
        )


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="fleetctl")
def main() -> None:
    """Detect abuse of inter-process communication (ATT&CK T1559) across an osquery fleet."""
