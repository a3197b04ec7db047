"""``fleetctl shell``: an osqueryi over the embedded engine.

``fleetctl shell 'SELECT ...' --json`` prints byte for byte what ``osqueryi --json``
prints (see ``fleetctl.engine.strings.osqueryi_json``), errors go to stderr as
``Error: <message>`` with exit status 1, and rows produced before an error are still
printed, as osqueryi does. Without SQL it reads statements from stdin (interactive
prompt on a terminal): statements end with ``;``; ``.tables [PATTERN]``,
``.schema [TABLE]``, ``.help`` and ``.exit``/``.quit`` work like osqueryi's.
"""

from __future__ import annotations

import sys
from typing import TextIO

import apsw
import click

from fleetctl.cli.output import render
from fleetctl.engine import Engine, QueryError, QueryResult, osqueryi_json

PROMPT = "osquery> "
CONTINUATION = "    ...> "

HELP = """\
Welcome to the fleetctl shell: osquery SQL over this host's tables.
.exit            Exit this program
.help            Show this message
.quit            Exit this program
.schema [TABLE]  Show the CREATE statements
.tables [TABLE]  List names of tables
"""


def run_sql(engine: Engine, sql: str, as_json: bool, out: TextIO) -> bool:
    """Run ``sql`` and print its rows; False (after printing the error) if it failed."""
    error: QueryError | None = None
    result: QueryResult | None
    try:
        result = engine.query(sql)
    except QueryError as failure:
        error = failure
        result = failure.partial if failure.partial is not None else None
    rows = result.rows if result is not None else []
    if as_json:
        out.write(osqueryi_json(rows))
    elif result is not None and rows:
        render(rows, result.columns, "table", out=out)
    out.flush()
    if error is not None:
        click.echo(f"Error: {error.message}", err=True)
        return False
    return True


def _meta(engine: Engine, line: str, out: TextIO) -> bool:
    """Handle a dot command; False when the shell should exit."""
    command, _, argument = line.strip().partition(" ")
    argument = argument.strip()
    if command in (".exit", ".quit"):
        return False
    if command == ".help":
        out.write(HELP)
    elif command == ".tables":
        for name in engine.table_names():
            if not argument or argument in name:
                out.write(f"  => {name}\n")
    elif command == ".schema":
        names = [argument] if argument else engine.table_names()
        for name in names:
            try:
                out.write(engine.schema(name) + ";\n")
            except QueryError as error:
                click.echo(f"Error: {error.message}", err=True)
    else:
        click.echo(
            f'Error: unknown command or invalid arguments: "{command[1:]}". Enter ".help" for help',
            err=True,
        )
    out.flush()
    return True


def interact(engine: Engine, as_json: bool, stdin: TextIO, out: TextIO) -> None:
    """Read-eval-print over ``stdin`` until EOF or ``.exit``."""
    prompt = stdin.isatty()
    buffer = ""
    while True:
        if prompt:
            out.write(CONTINUATION if buffer else PROMPT)
            out.flush()
        line = stdin.readline()
        if not line:
            break
        if not buffer and line.lstrip().startswith("."):
            if not _meta(engine, line, out):
                return
            continue
        buffer += line
        if buffer.strip() and apsw.complete(buffer):
            run_sql(engine, buffer, as_json, out)
            buffer = ""
    if buffer.strip():
        run_sql(engine, buffer, as_json, out)


@click.command("shell")
@click.argument("sql", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help="Print results exactly as `osqueryi --json` does."
)
@click.pass_context
def shell(ctx: click.Context, sql: str | None, as_json: bool) -> None:
    """Run osquery SQL on this host: one query from SQL, else an interactive prompt."""
    engine = Engine()
    if sql is not None:
        ctx.exit(0 if run_sql(engine, sql, as_json, sys.stdout) else 1)
    interact(engine, as_json, sys.stdin, sys.stdout)
