"""``fleetctl sql``: ad-hoc, read-only SQL over the store, and the views it may read."""

from __future__ import annotations

from typing import Any

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.output import output_options, render


@click.command()
@click.argument("query", required=False)
@click.option("--limit", default=10_000, show_default=True, help="Most rows to return.")
@click.option(
    "--schema",
    "schema",
    is_flag=True,
    help="List the hunting views and their columns (with the values of closed sets).",
)
@client_options
@output_options
def sql(client: AdminClient, query: str | None, limit: int, schema: bool, fmt: str) -> None:
    """Run one read query over the hunting views (hunt_*), read-only and time-limited."""
    if schema:
        render(schema_rows(client.get("/sql/schema")["views"]), fmt=fmt, title="hunting views")
        return
    if query is None:
        raise click.UsageError("give a QUERY, or --schema to list what it may read")
    answer = client.post("/sql", {"sql": query, "limit": limit})
    render(answer["rows"], answer["columns"], fmt)
    if answer["truncated"]:
        reason = answer.get("reason") or f"stopped at {limit} rows"
        click.echo(f"(truncated: {reason}; narrow the query or use --limit)", err=True)


def schema_rows(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per view column: view, column, type and its values where they are a
    closed set."""
    return [
        {
            "view": view["view"],
            "column": column["name"],
            "type": column["type"],
            "values": ", ".join(column["values"]),
        }
        for view in views
        for column in view["columns"]
    ]
