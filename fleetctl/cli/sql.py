"""``fleetctl sql``: ad-hoc, read-only SQL over the store."""

from __future__ import annotations

import click

from fleetctl.client import client_options, open_client
from fleetctl.output import output_options, render


@click.command()
@click.argument("query")
@click.option("--limit", default=10_000, show_default=True, help="Most rows to return.")
@client_options
@output_options
@click.pass_context
def sql(
    ctx: click.Context, query: str, limit: int, server: str, token: str, ca: str, fmt: str
) -> None:
    """Run one read-only SELECT over the store (writes are refused by the database)."""
    answer = open_client(ctx, server, token, ca).post("/sql", {"sql": query, "limit": limit})
    render(answer["rows"], answer["columns"], fmt)
    if answer["truncated"]:
        click.echo(f"(stopped at {limit} rows; use --limit)", err=True)
