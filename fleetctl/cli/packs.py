"""``fleetctl packs``: check, convert, apply and inspect osquery packs.

Each subcommand is a small function on the ``packs`` group; commands that print rows go
through ``fleetctl.output.render`` so ``--format`` behaves as everywhere else.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from fleetctl.agent.engines import QueryEngine, select_engine
from fleetctl.agent.errors import EngineError
from fleetctl.client import ClientError, client_options, open_client
from fleetctl.output import output_options, render
from fleetctl.packs.convert import ConvertError, convert_file
from fleetctl.packs.loader import (
    PackFormatError,
    dumps,
    load_file,
    pack_files,
    shipped_packs_dir,
)
from fleetctl.packs.model import Pack, apply_request
from fleetctl.packs.validate import ValidationError, validate_paths, validate_text
from fleetctl.targeting import TargetedPack, pack_targets, queries_for

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


def load_valid_packs(ctx: click.Context, paths: tuple[Path, ...], fmt: str) -> list[Pack]:
    """Validate, then load, the packs under ``paths`` (default: the shipped packs)."""
    chosen = paths or (shipped_packs_dir(),)
    report = validate_paths(chosen)
    if report.errors:
        _render_errors(report.errors, fmt, err=True)
        ctx.exit(1)
    found: list[Pack] = []
    for file in pack_files(chosen):
        found.extend(load_file(file))
    return found


def _send_packs(
    ctx: click.Context,
    endpoint: str,
    paths: tuple[Path, ...],
    labels: tuple[str, ...],
    fmt: str,
    connection: tuple[str, str, str],
) -> dict[str, Any]:
    """Validate the local packs, then send them to ``endpoint``; on refusal show the
    server's per-pack errors as a table before failing."""
    found = load_valid_packs(ctx, paths, fmt)
    client = open_client(ctx, *connection)
    try:
        answer: dict[str, Any] = client.post(endpoint, apply_request(found, labels))
    except ClientError as exc:
        if not exc.details:
            raise
        render(exc.details, ERROR_COLUMNS, fmt, title="pack errors", out=sys.stderr)
        raise click.ClickException(exc.message) from None  # the table said the rest
    return answer


@packs.command("apply")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="Send the packs only to hosts in this label (repeatable; default: all).",
)
@client_options
@output_options
@click.pass_context
def apply_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    labels: tuple[str, ...],
    server: str,
    token: str,
    ca: str,
    fmt: str,
) -> None:
    """Store packs as new versions on the server (default: the shipped packs).

    Every pack is validated first; if any is wrong nothing is applied and hosts keep
    the previous versions. Hosts receive the change on their next config refresh.
    """
    answer = _send_packs(ctx, "/packs/apply", paths, labels, fmt, (server, token, ca))
    render(
        answer["applied"], ("pack", "action", "version", "queries", "labels"), fmt, title="applied"
    )


@packs.command("diff")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--label", "labels", multiple=True, help="Labels the packs would target.")
@client_options
@output_options
@click.pass_context
def diff_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    labels: tuple[str, ...],
    server: str,
    token: str,
    ca: str,
    fmt: str,
) -> None:
    """Show what applying would change: per query, and how many hosts gain or lose it."""
    answer = _send_packs(ctx, "/packs/diff", paths, labels, fmt, (server, token, ca))
    rows = (
        [r for r in answer["diff"] if r["change"] != "unchanged"]
        if fmt == "table"
        else (answer["diff"])
    )
    render(
        rows,
        ("pack", "query", "change", "hosts_gain", "hosts_lose", "hosts_after"),
        fmt,
        title=f"changes against the server ({answer['hosts']} enrolled hosts)",
    )


@packs.command("list")
@client_options
@output_options
@click.pass_context
def list_command(ctx: click.Context, server: str, token: str, ca: str, fmt: str) -> None:
    """Packs on the server, with their current version and targets."""
    answer = open_client(ctx, server, token, ca).get("/packs")
    render(
        answer["packs"],
        ("name", "version", "queries", "platform", "labels", "updated"),
        fmt,
        title="packs",
    )


@packs.command("show")
@click.argument("name")
@click.option("--version", "version", type=int, default=None, help="An older version.")
@client_options
@output_options
@click.pass_context
def show_command(
    ctx: click.Context, name: str, version: int | None, server: str, token: str, ca: str, fmt: str
) -> None:
    """One pack as stored (osquery pack JSON) and its version history."""
    answer = open_client(ctx, server, token, ca).get(f"/packs/{name}", version=version)
    if fmt == "json":
        render([answer], fmt=fmt)
        return
    render([answer["pack"]], fmt=fmt, title="pack")
    if answer["body"] is not None and fmt == "table":
        click.echo(json.dumps(answer["body"], indent=2))
    render(answer["history"], ("version", "created", "deleted", "labels"), fmt, title="history")


@packs.command("delete")
@click.argument("name")
@client_options
@click.pass_context
def delete_command(ctx: click.Context, name: str, server: str, token: str, ca: str) -> None:
    """Stop serving a pack (kept in history as a deleted version)."""
    answer = open_client(ctx, server, token, ca).delete(f"/packs/{name}")
    click.echo(f"pack {answer['pack']}: {answer['action']} (version {answer['version']})")


@packs.command("test")
@click.argument("packs_or_files", nargs=-1)
@click.option(
    "--engine",
    type=click.Choice(["auto", "embedded", "osquery"]),
    default="auto",
    show_default=True,
    help="Where the queries run; auto uses osqueryd when present.",
)
@click.option("--osquery-socket", default=None, help="A running osqueryd's extensions socket.")
@output_options
@click.pass_context
def test_command(
    ctx: click.Context,
    packs_or_files: tuple[str, ...],
    engine: str,
    osquery_socket: str | None,
    fmt: str,
) -> None:
    """Run every query of the packs (default: the shipped ones) on this host.

    Prints rows, time and errors per query, in the order osqueryd would run them;
    queries for other platforms and packs whose discovery fails are reported, not run.
    Exits 1 when a query that should run here fails.
    """
    chosen = _pack_paths(packs_or_files)
    found = load_valid_packs(ctx, chosen, fmt)
    try:
        query_engine = select_engine(engine, socket=osquery_socket)
    except EngineError as exc:
        raise click.ClickException(exc.message) from exc
    try:
        results = [row for pack in found for row in run_pack(query_engine, pack, this_family())]
    finally:
        query_engine.close()
    render(
        results,
        ("pack", "query", "status", "rows", "ms", "error"),
        fmt,
        title=f"pack queries on this host ({query_engine.name} engine)",
    )
    if any(r["status"] == "error" for r in results):
        ctx.exit(1)


def _pack_paths(items: tuple[str, ...]) -> tuple[Path, ...]:
    """Files as given; bare names are shipped packs (``ipc-telemetry``)."""
    paths = []
    for item in items:
        path = Path(item)
        if not path.exists():
            path = shipped_packs_dir() / f"{item}.json"
            if not path.exists():
                raise click.BadParameter(f"no pack file or shipped pack named {item!r}")
        paths.append(path)
    return tuple(paths)


def this_family() -> str:
    return {"Darwin": "darwin", "Windows": "windows"}.get(platform.system(), "linux")


def run_pack(query_engine: QueryEngine, pack: Pack, family: str) -> list[dict[str, Any]]:
    """One result row per query: ok with rows and time, error, or why it did not run."""
    if not pack_targets(TargetedPack(pack), family, ()):
        return [_row(pack, q.name, f"skipped: pack is for {pack.platform}") for q in pack.queries]
    for sql in pack.discovery:
        try:
            if not query_engine.query(sql).rows:
                return [
                    _row(pack, q.name, "inactive: discovery returned no rows") for q in pack.queries
                ]
        except EngineError as exc:
            return [
                _row(pack, q.name, "inactive: discovery failed", error=exc.message)
                for q in pack.queries
            ]
    runnable = {q.name for q in queries_for(pack, family)}
    out = []
    for query in pack.queries:
        if query.name not in runnable:
            out.append(_row(pack, query.name, f"skipped: query is for {query.platform}"))
            continue
        started = time.perf_counter()
        try:
            count = len(query_engine.query(query.query).rows)
        except EngineError as exc:
            out.append(
                _row(
                    pack,
                    query.name,
                    "error",
                    error=exc.message,
                    ms=(time.perf_counter() - started) * 1000,
                )
            )
            continue
        out.append(
            _row(pack, query.name, "ok", rows=count, ms=(time.perf_counter() - started) * 1000)
        )
    return out


def _row(
    pack: Pack,
    query: str,
    status: str,
    *,
    rows: int | None = None,
    ms: float | None = None,
    error: str = "",
) -> dict[str, Any]:
    return {
        "pack": pack.name,
        "query": query,
        "status": status,
        "rows": rows,
        "ms": None if ms is None else round(ms, 1),
        "error": error,
    }
