"""``fleetctl sql``: ad-hoc, read-only SQL over the store."""

from __future__ import annotations

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.output import output_options, render


@click.command()
@click.argument("query")
@click.option("--limit", default=10_000, show_default=True, help="Most rows to return.")
@client_options
@output_options
def sql(client: AdminClient, query: str, limit: int, fmt: str) -> None:
    """Run one read query over the hunting views (hunt_*), read-only and time-limited."""
    answer = client.post("/sql", {"sql": query, "limit": limit})
    render(answer["rows"], answer["columns"], fmt)
    if answer["truncated"]:
        reason = answer.get("reason") or f"stopped at {limit} rows"
        click.echo(f"(truncated: {reason}; narrow the query or use --limit)", err=True)
