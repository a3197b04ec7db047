"""``fleetctl labels apply|list|show|delete``: named host sets that packs can target."""

from __future__ import annotations

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.groups import Group
from fleetctl.cli.options import skip_missing_option
from fleetctl.cli.output import output_options, render


@click.group(cls=Group)
def labels() -> None:
    """Host labels: a SQL membership query hosts answer, or a manual host list."""


@labels.command("apply")
@click.argument("name")
@click.option(
    "--sql",
    "query",
    default=None,
    help="Membership query: a host is in the label when it returns a row.",
)
@click.option(
    "--hosts",
    "hosts",
    default=None,
    help="Comma-separated host ids, identifiers, hostnames or uuids (manual label).",
)
@click.option("--platform", default=None, help="Only hosts of this platform run the query.")
@click.option("--description", default="", help="What the label means.")
@skip_missing_option
@client_options
def apply_command(
    client: AdminClient,
    name: str,
    query: str | None,
    hosts: str | None,
    platform: str | None,
    description: str,
    skip_missing: bool,
) -> None:
    """Create or replace label NAME (give exactly one of --sql and --hosts).

    A --sql label whose query reads a table some of its hosts lack (their platform has
    none, or their osqueryd does not report the extension table) lists those hosts and is
    not applied, unless --skip-missing: such hosts then never join it."""
    if (query is None) == (hosts is None):
        raise click.UsageError("give exactly one of --sql and --hosts")
    body: dict[str, object] = {
        "name": name,
        "platform": platform,
        "description": description,
        "skip_missing": skip_missing,
    }
    if query is not None:
        body["query"] = query
    else:
        body["hosts"] = [h.strip() for h in (hosts or "").split(",") if h.strip()]
    answer = client.post("/labels", body)
    click.echo(f"label {answer['label']}: {answer['action']}")


@labels.command("list")
@client_options
@output_options
def list_command(client: AdminClient, fmt: str) -> None:
    """Labels with their kind and member count."""
    answer = client.get("/labels")
    render(
        answer["labels"],
        ("name", "kind", "platform", "members", "query", "updated"),
        fmt,
        title="labels",
    )


@labels.command("show")
@click.argument("name")
@client_options
@output_options
def show_command(client: AdminClient, name: str, fmt: str) -> None:
    """A label and its member hosts."""
    answer = client.get(f"/labels/{name}")
    if fmt == "json":
        render([answer], fmt=fmt)
        return
    render([answer["label"]], fmt=fmt, title="label")
    render(
        answer["members"],
        ("id", "host_identifier", "hostname", "platform", "evaluated"),
        fmt,
        title="members",
    )


@labels.command("delete")
@click.argument("name")
@client_options
def delete_command(client: AdminClient, name: str) -> None:
    """Delete label NAME and its memberships (refused while a pack targets it)."""
    answer = client.delete(f"/labels/{name}")
    click.echo(f"label {answer['label']}: {answer['action']}")
