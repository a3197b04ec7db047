"""``fleetctl query``: a live query that returns as soon as every online target answered."""

from __future__ import annotations

import sys
import time

import click

from fleetctl.client import client_options, open_client
from fleetctl.output import output_options, render
from fleetctl.timeutil import parse_duration


@click.command()
@click.argument("sql")
@click.option(
    "--targets",
    default="all",
    show_default=True,
    help="all, platform:P, label:L, host:H (comma-separated).",
)
@click.option(
    "--timeout",
    "timeout_text",
    default="60s",
    show_default=True,
    help="Stop waiting (and stop sending to offline hosts) after this long.",
)
@client_options
@output_options
@click.pass_context
def query(
    ctx: click.Context,
    sql: str,
    targets: str,
    timeout_text: str,
    server: str,
    token: str,
    ca: str,
    fmt: str,
) -> None:
    """Run SQL on the targeted hosts now; rows are printed as hosts answer.

    Returns when every target that is online has answered, or at the timeout; hosts
    that fail show osquery's error. Progress (answered / online / targeted) goes to stderr.
    """
    try:
        timeout = parse_duration(timeout_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeout") from exc
    client = open_client(ctx, server, token, ca)
    started = client.post("/queries", {"sql": sql, "targets": targets, "timeout": timeout})
    qid = started["id"]
    click.echo(f"query {qid}: {started['targeted']} targeted, {started['online']} online", err=True)
    deadline = time.monotonic() + timeout
    shown: set[str] = set()
    rows: list[dict[str, object]] = []
    errors: list[dict[str, object]] = []
    while True:
        status = client.get(f"/queries/{qid}")
        for host in status["hosts"]:
            if host["state"] not in ("done", "failed") or host["host"] in shown:
                continue
            shown.add(host["host"])
            if host["state"] == "failed":
                errors.append({"host": host["host"], "error": host["message"]})
                click.echo(f"{host['host']}: error: {host['message']}", err=True)
            new = [{"host": host["host"], **r} for r in host["rows"]]
            rows.extend(new)
            if fmt == "ndjson":
                render(new, fmt="ndjson")
                sys.stdout.flush()
        done = status["online_answered"] >= status["online"] and status["answered"] > 0
        if done or status["answered"] == status["targeted"] or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    click.echo(
        f"answered {status['answered']} / online {status['online']} / targeted "
        f"{status['targeted']}",
        err=True,
    )
    if fmt != "ndjson":
        render(rows, fmt=fmt, title=f"query {qid}")
    if errors:
        ctx.exit(1)
