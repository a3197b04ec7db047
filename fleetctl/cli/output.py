"""One way to print rows: ``render(rows, columns, fmt)`` plus the shared ``--format`` option.

Every command that prints rows goes through here so that table, JSON, NDJSON and CSV
output behave the same everywhere: JSON is one array of row objects (``[]`` when empty),
NDJSON one object per line, CSV a header then rows, and ``table`` a rich table that
degrades to plain text when stdout is not a terminal. On a terminal a table fits its
width, long cells cut with "…"; ``--wide`` folds them instead, so every character shows.
"""

from __future__ import annotations

import csv
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TextIO, TypeVar

import click
import orjson

FORMATS = ("table", "json", "csv", "ndjson")

F = TypeVar("F", bound=Callable[..., Any])


MIN_CUT_WIDTH = 8  # a cut column still shows this many characters
WIDE = "fleetctl.wide"  # click context meta key: --wide was given


def _remember_wide(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[WIDE] = True


def output_options(func: F, formats: Sequence[str] = FORMATS) -> F:
    """Add ``--format table|json|csv|ndjson`` (or the ``formats`` a report offers) and
    ``--wide`` to a command (stacked once, used everywhere)."""
    func = click.option(
        "--wide",
        is_flag=True,
        expose_value=False,
        callback=_remember_wide,
        help="Tables: show every cell whole (folded) instead of cut to the terminal.",
    )(func)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(formats),
        default="table",
        show_default=True,
        help="Output format. json is one array of row objects; ndjson one object per line."
        if "ndjson" in formats
        else "Output format.",
    )(func)


def _wide() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(WIDE))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def infer_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Columns in first-seen order across all rows."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def render(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    fmt: str = "table",
    *,
    title: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Print ``rows`` in ``fmt``. ``columns`` fixes the order (default: keys of the rows)."""
    out = out or sys.stdout
    if fmt == "json":
        _render_json(rows, columns, out)
        return
    if fmt == "ndjson":
        for row in rows:
            out.write(orjson.dumps(_project(row, columns), default=str).decode() + "\n")
        return
    materialised = list(rows)
    cols = list(columns) if columns is not None else infer_columns(materialised)
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(cols)
        for row in materialised:
            writer.writerow([_cell(row.get(c)) for c in cols])
        return
    _render_table(materialised, cols, title, out)


def _project(row: Mapping[str, Any], columns: Sequence[str] | None) -> Mapping[str, Any]:
    if columns is None:
        return row
    return {c: row.get(c) for c in columns}


def _render_json(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None, out: TextIO
) -> None:
    """Stream a JSON array one row per line, so large results never sit in memory twice."""
    first = True
    for row in rows:
        out.write("[" if first else ",\n ")
        out.write(orjson.dumps(_project(row, columns), default=str).decode())
        first = False
    out.write("[]\n" if first else "]\n")


def fit_widths(longest: Sequence[int], room: int) -> list[int]:
    """Column widths within ``room``: narrow columns keep their width, the room left is
    shared among the wide ones (never under ``MIN_CUT_WIDTH``), so a long command line
    gives way and the pid beside it stays whole."""
    widths = list(longest)
    if sum(widths) <= room:
        return widths
    left = room
    order = sorted(range(len(widths)), key=lambda i: longest[i])
    for done, i in enumerate(order):
        share = left // (len(order) - done)
        widths[i] = min(longest[i], max(share, MIN_CUT_WIDTH))
        left -= widths[i]
    return widths


def _render_table(
    rows: list[Mapping[str, Any]], cols: list[str], title: str | None, out: TextIO
) -> None:
    from rich.console import Console
    from rich.table import Table

    terminal = out.isatty()
    cut = terminal and not _wide()
    table = Table(title=title, show_lines=False, header_style="bold")
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    width = shutil.get_terminal_size().columns if terminal else 200
    longest = [max([len(col), *(len(r[i]) for r in cells)]) for i, col in enumerate(cols)]
    fitted = fit_widths(longest, width - 3 * len(cols) - 1) if cut else longest
    for col, col_width in zip(cols, fitted, strict=True):
        if cut:
            table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=col_width)
        else:
            table.add_column(col, overflow="fold")
    for cell_row in cells:
        table.add_row(*cell_row)
    console = Console(file=out, width=width)
    if not rows:
        console.print(f"({title + ': ' if title else ''}no rows)")
        return
    console.print(table)
