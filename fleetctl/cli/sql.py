"""``fleetctl sql``: ad-hoc, read-only SQL over the store, the views it may read, and
the queries saved for every hunter (the console's saved queries)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.output import output_options, render

SAVED_COLUMNS = ("name", "description", "saved_by", "saved_at", "sql")


@click.command()
@click.argument("query", required=False)
@click.option("--limit", default=10_000, show_default=True, help="Most rows to return.")
@click.option(
    "--schema",
    "schema",
    is_flag=True,
    help="List the hunting views and their columns (with the values of closed sets).",
)
@click.option("--saved", is_flag=True, help="List the saved queries.")
@click.option("--run", "run_name", metavar="NAME", help="Run the saved query NAME.")
@click.option(
    "--save",
    "save_name",
    metavar="NAME",
    help="Once QUERY has run, keep it as NAME for every hunter (replacing one so named).",
)
@click.option("--description", default="", help="What the query saved with --save finds.")
@click.option("--delete-saved", "delete_name", metavar="NAME", help="Delete the saved query NAME.")
@client_options
@output_options
def sql(
    client: AdminClient,
    query: str | None,
    limit: int,
    schema: bool,
    saved: bool,
    run_name: str | None,
    save_name: str | None,
    description: str,
    delete_name: str | None,
    fmt: str,
) -> None:
    """Run one read query over the hunting views (hunt_*), read-only and time-limited;
    or list, run, save and delete the queries saved for every hunter."""
    actions = [query is not None, schema, saved, run_name is not None, delete_name is not None]
    if sum(actions) != 1:
        raise click.UsageError(
            "give one of: a QUERY, --schema, --saved, --run NAME or --delete-saved NAME"
        )
    if (save_name is not None or description) and query is None:
        raise click.UsageError("--save and --description go with a QUERY")
    if schema:
        render(schema_rows(client.get("/sql/schema")["views"]), fmt=fmt, title="hunting views")
    elif saved:
        render(client.get("/sql/saved")["queries"], SAVED_COLUMNS, fmt, title="saved queries")
    elif delete_name is not None:
        client.delete(f"/sql/saved/{quote(delete_name, safe='')}")
        click.echo(f"deleted saved query {delete_name}", err=True)
    elif run_name is not None:
        run_query(client, saved_sql(client, run_name), limit, fmt)
    elif query is not None:
        run_query(client, query, limit, fmt)
        if save_name is not None:
            body = {"name": save_name, "sql": query, "description": description}
            kept = client.post("/sql/saved", body)
            click.echo(f"saved query {save_name} ({kept['action']})", err=True)


def run_query(client: AdminClient, query: str, limit: int, fmt: str) -> None:
    """Run ``query`` and print its rows; say so on stderr when the answer was cut short."""
    answer = client.post("/sql", {"sql": query, "limit": limit})
    render(answer["rows"], answer["columns"], fmt)
    if answer["truncated"]:
        reason = answer.get("reason") or f"stopped at {limit} rows"
        click.echo(f"(truncated: {reason}; narrow the query or use --limit)", err=True)


def saved_sql(client: AdminClient, name: str) -> str:
    """The SQL saved as ``name``."""
    for saved in client.get("/sql/saved")["queries"]:
        if saved["name"] == name:
            return str(saved["sql"])
    raise click.ClickException(f"no saved query {name!r} (fleetctl sql --saved lists them)")


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
