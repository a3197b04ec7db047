"""``fleetctl sql``: ad-hoc, read-only SQL over the store."""

from __future__ import annotations

import click

from fleetctl.cli.client import client_options, open_client
from fleetctl.cli.output import output_options, render


@click.command()
@click.argument("query")
@click.option("--limit", default=10_000, show_default=True, help="Most rows to return.")
@client_options
@output_options
@click.pass_context
def sql(
    ctx: click.Context, query: str, limit: int, server: str, token: str, ca: str, fmt: str
) -> None:
    """Run one read query over the hunting views (hunt_*), read-only and time-limited."""
    answer = open_client(ctx, server, token, ca).post("/sql", {"sql": query, "limit": limit})
    render(answer["rows"], answer["columns"], fmt)
    if answer["truncated"]:
        reason = answer.get("reason") or f"stopped at {limit} rows"
        click.echo(f"(truncated: {reason}; narrow the query or use --limit)", err=True)
