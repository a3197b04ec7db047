"""``fleetctl audit``: who changed what and ran which query, and whether the trail holds."""

from __future__ import annotations

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.groups import DefaultGroup
from fleetctl.cli.output import output_options, render

COLUMNS = (
    "id",
    "at",
    "user",
    "token",
    "source",
    "action",
    "target",
    "outcome",
    "status",
    "details",
)


@click.group(cls=DefaultGroup, default="list")
def audit() -> None:
    """Who changed what and ran which query through the admin API.

    Without a subcommand, lists the trail: `fleetctl audit --since 1d --user alice` is
    `fleetctl audit list --since 1d --user alice`."""


@audit.command("list")
@click.option("--since", default=None, help="From this time (15m, 2d, ISO 8601, unix seconds).")
@click.option("--user", default=None, help="Only what the user of this name did.")
@click.option("--limit", default=1000, show_default=True, help="Newest N entries.")
@client_options
@output_options
def list_entries(
    client: AdminClient, since: str | None, user: str | None, limit: int, fmt: str
) -> None:
    """The trail, oldest first.

    Who (the user and the token's name), from where, what (method and route, with the
    SQL, targets or note it carried) and how it ended. Calls with a refused token are recorded too;
    `fleetctl audit verify` checks that no entry was edited or removed."""
    payload = client.get("/audit", since=since, user=user, limit=limit)
    rows = [{k: e.get(k) for k in COLUMNS} for e in payload["audit"]]
    render(rows, fmt=fmt, title="audit trail")


@audit.command()
@client_options
@output_options
def verify(client: AdminClient, fmt: str) -> None:
    """Check the trail's hash chain; exit 1 on an edited or removed entry."""
    payload = client.get("/audit/verify")
    if payload["breaks"]:
        render(payload["breaks"], fmt=fmt, title="audit trail breaks")
        raise SystemExit(1)
    click.echo(f"audit trail intact: {payload['entries']} entries, each chained to the last")
