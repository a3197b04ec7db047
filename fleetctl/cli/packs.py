"""``fleetctl packs``: check and convert osquery packs.

Each subcommand is a small function on the ``packs`` group; commands that print rows go
through ``fleetctl.output.render`` so ``--format`` behaves as everywhere else.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from fleetctl.output import output_options, render
from fleetctl.packs.convert import ConvertError, convert_file
from fleetctl.packs.loader import PackFormatError, dumps, shipped_packs_dir
from fleetctl.packs.validate import ValidationError, validate_paths, validate_text

ERROR_COLUMNS = ("file", "pack", "query", "identifier", "message")


@click.group("packs")
def packs() -> None:
    """Check, convert and manage osquery packs."""


def _render_errors(errors: Sequence[ValidationError], fmt: str, *, err: bool = False) -> None:
    render(
        (e.as_row() for e in errors),
        ERROR_COLUMNS,
        fmt,
        title="pack errors",
        out=sys.stderr if err else sys.stdout,
    )


@packs.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@output_options
@click.pass_context
def validate_command(ctx: click.Context, paths: tuple[Path, ...], fmt: str) -> None:
    """Validate pack files or directories of them (default: the packs fleetctl ships).

    Checks keys, types and names the way osqueryd reads them, and compiles every query
    against the osquery schema for each platform it can run on. Exits 1 on any error.
    """
    report = validate_paths(paths or (shipped_packs_dir(),))
    if report.errors:
        _render_errors(report.errors, fmt)
        ctx.exit(1)
    summary = f"{report.packs} packs, {report.queries} queries: OK"
    if fmt == "table":
        click.echo(summary)
    else:
        render([], ERROR_COLUMNS, fmt)
        click.echo(summary, err=True)


@packs.command("convert")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the pack here instead of standard output.",
)
@output_options
@click.pass_context
def convert_command(ctx: click.Context, file: Path, out: Path | None, fmt: str) -> None:
    """Convert an osquery .conf pack or config, or FleetDM YAML, into a pack file.

    One pack is written as a pack file; several as an osquery config ``packs`` object.
    The result is validated first and nothing is written if it has errors (exit 1).
    """
    try:
        conversion = convert_file(file)
    except (ConvertError, PackFormatError) as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in conversion.warnings:
        click.echo(f"warning: {warning}", err=True)
    if not conversion.packs:
        raise click.ClickException(f"{file}: no packs or scheduled queries found")
    text = dumps(conversion.packs)
    errors = validate_text(text, str(file), name=conversion.packs[0].name)
    if errors:
        _render_errors(errors, fmt, err=True)
        ctx.exit(1)
    if out is None:
        click.echo(text, nl=False)
        return
    out.write_text(text, encoding="utf-8")
    queries = sum(len(p.queries) for p in conversion.packs)
    click.echo(f"{len(conversion.packs)} packs, {queries} queries written to {out}", err=True)
