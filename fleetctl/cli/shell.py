"""``fleetctl shell``: an osqueryi over the embedded engine.

``fleetctl shell 'SELECT ...' --json`` prints byte for byte what ``osqueryi --json``
prints (see ``fleetctl.engine.strings.osqueryi_json``), errors go to stderr as
``Error: <message>`` with exit status 1, and rows produced before an error are still
printed, as osqueryi does. Without SQL it reads statements from stdin (interactive
prompt on a terminal, with line editing and a history kept in
``$FLEETCTL_HOME/shell_history``): statements end with ``;``; ``.tables [PATTERN]``,
``.schema [TABLE]``, ``.mode MODE``, ``.help`` and ``.exit``/``.quit`` work like
osqueryi's. The output modes are osqueryi's: ``pretty`` (a table), ``line`` (one
``column = value`` per line, a blank line between rows), ``csv``, ``json`` and ``list``
(values joined by ``|`` under a header line).
"""

from __future__ import annotations

import contextlib
import csv
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import apsw
import click

from fleetctl.engine import Engine, QueryError, QueryResult, osqueryi_json, string_rows
from fleetctl.output import render
from fleetctl.settings import default_home

PROMPT = "osquery> "
CONTINUATION = "    ...> "

HELP = """\
Welcome to the fleetctl shell: osquery SQL over this host's tables.
.exit            Exit this program
.help            Show this message
.mode MODE       Set output mode where MODE is one of:
                   csv      Comma-separated values
                   json     JSON, as osqueryi --json prints it
                   line     One value per line
                   list     Values delimited by |
                   pretty   Pretty printed SQL results (default)
.quit            Exit this program
.schema [TABLE]  Show the CREATE statements
.tables [TABLE]  List names of tables
"""


MODES = ("pretty", "line", "csv", "json", "list")
HISTORY_FILE = "shell_history"
HISTORY_LINES = 1000


def run_sql(engine: Engine, sql: str, mode: str, out: TextIO) -> bool:
    """Run ``sql`` and print its rows; False (after printing the error) if it failed."""
    error: QueryError | None = None
    result: QueryResult | None
    try:
        result = engine.query(sql)
    except QueryError as failure:
        error = failure
        result = failure.partial if failure.partial is not None else None
    rows = result.rows if result is not None else []
    if mode == "json":
        out.write(osqueryi_json(rows))
    elif result is not None and rows:
        print_rows(rows, result.columns, mode, out)
    out.flush()
    if error is not None:
        click.echo(f"Error: {error.message}", err=True)
        return False
    return True


def print_rows(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str], mode: str, out: TextIO
) -> None:
    """Rows in one of osqueryi's output modes other than ``json``."""
    if mode == "pretty":
        render(rows, columns, "table", out=out)
        return
    values = string_rows(rows, columns)
    if mode == "line":
        width = max(len(c) for c in columns)
        out.write("\n".join("".join(f"{c:>{width}} = {r[c]}\n" for c in columns) for r in values))
    elif mode == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([r[c] for c in columns] for r in values)
    else:  # list
        out.write("|".join(columns) + "\n")
        out.writelines("|".join(r[c] for c in columns) + "\n" for r in values)


class Session:
    """What one shell remembers between statements: the output mode."""

    def __init__(self, engine: Engine, mode: str) -> None:
        self.engine = engine
        self.mode = mode

    def meta(self, line: str, out: TextIO) -> bool:
        """Handle a dot command; False when the shell should exit."""
        command, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if command in (".exit", ".quit"):
            return False
        if command == ".help":
            out.write(HELP)
        elif command == ".tables":
            for name in self.engine.table_names():
                if not argument or argument in name:
                    out.write(f"  => {name}\n")
        elif command == ".schema":
            self._schema(argument, out)
        elif command == ".mode" and argument in MODES:
            self.mode = argument
        elif command == ".mode":
            click.echo(f"Error: mode should be one of: {' '.join(MODES)}", err=True)
        else:
            click.echo(
                f'Error: unknown command or invalid arguments: "{command[1:]}".'
                ' Enter ".help" for help',
                err=True,
            )
        out.flush()
        return True

    def _schema(self, table: str, out: TextIO) -> None:
        for name in [table] if table else self.engine.table_names():
            try:
                out.write(self.engine.schema(name) + ";\n")
            except QueryError as error:
                click.echo(f"Error: {error.message}", err=True)

    def interact(self, lines: Any, out: TextIO) -> None:
        """Read-eval-print over ``lines`` (``readline(prompt)`` returns "" at the end)
        until the end or ``.exit``."""
        buffer = ""
        while True:
            line = lines(CONTINUATION if buffer else PROMPT)
            if not line:
                break
            if not buffer and line.lstrip().startswith("."):
                if not self.meta(line, out):
                    return
                continue
            buffer += line
            if buffer.strip() and apsw.complete(buffer):
                run_sql(self.engine, buffer, self.mode, out)
                buffer = ""
        if buffer.strip():
            run_sql(self.engine, buffer, self.mode, out)


def piped_lines(stdin: TextIO) -> Any:
    """Lines of a pipe or file, no prompt."""
    return lambda _prompt: stdin.readline()


def terminal_lines(history: Path) -> Any:
    """Lines typed at a terminal with line editing, kept in ``history`` across runs."""
    import readline

    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(HISTORY_LINES)

    def read(prompt: str) -> str:
        try:
            line = input(prompt) + "\n"
        except EOFError:
            click.echo()
            line = ""
        try:
            history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(history)
        except OSError:
            pass  # a read-only home keeps the session's history only
        return line

    return read


@click.command("shell")
@click.argument("sql", required=False)
@click.option(
    "--json", "mode", flag_value="json", help="Print results exactly as `osqueryi --json` does."
)
@click.option("--csv", "mode", flag_value="csv", help="Print results as CSV with a header.")
@click.option("--line", "mode", flag_value="line", help="Print one `column = value` per line.")
@click.option("--list", "mode", flag_value="list", help="Print values joined by `|`.")
@click.pass_context
def shell(ctx: click.Context, sql: str | None, mode: str | None) -> None:
    """Run osquery SQL on this host: one query from SQL, else an interactive prompt.

    \b
    Examples:
      fleetctl shell "SELECT pid, name FROM processes LIMIT 3"
      fleetctl shell --json "SELECT * FROM process_stdio WHERE kind = 'fifo'"
      fleetctl shell            # then .tables, .schema process_stdio, .mode line
    """
    engine = Engine()
    mode = mode or "pretty"
    if sql is not None:
        ctx.exit(0 if run_sql(engine, sql, mode, sys.stdout) else 1)
    lines = (
        terminal_lines(default_home() / HISTORY_FILE)
        if sys.stdin.isatty()
        else piped_lines(sys.stdin)
    )
    Session(engine, mode).interact(lines, sys.stdout)
