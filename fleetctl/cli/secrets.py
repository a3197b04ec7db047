"""``fleetctl secrets add|list|rotate|revoke``: the enroll secrets osqueryd presents."""

from __future__ import annotations

from typing import TextIO
from urllib.parse import quote

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.groups import Group
from fleetctl.cli.output import output_options, render

COLUMNS = ("name", "label", "state", "created_at", "revoked_at")


def _path(name: str) -> str:
    return f"/secrets/{quote(name, safe='')}"


@click.group(cls=Group)
def secrets() -> None:
    """Enroll secrets: named, each able to put its hosts in a label, rotated or revoked."""


@secrets.command("add")
@click.argument("name")
@click.option("--label", default=None, help="Hosts it enrolls join this manual label.")
@click.option(
    "--secret-file",
    type=click.File("r"),
    default=None,
    help="Read the secret from this file (default: generate one and print it once).",
)
@client_options
def add(client: AdminClient, name: str, label: str | None, secret_file: TextIO | None) -> None:
    """Add enroll secret NAME; osqueryd presents it with --enroll_secret_path."""
    body = {"name": name} | ({"label": label} if label else {})
    if secret_file is not None:
        body["secret"] = secret_file.read().strip()
    answer = client.post("/secrets", body)
    if "secret" in answer:
        click.echo(answer["secret"])
    where = f", hosts join label {label}" if label else ""
    click.echo(f"enroll secret {name} added{where}", err=True)


@secrets.command("list")
@client_options
@output_options
def list_secrets(client: AdminClient, fmt: str) -> None:
    """Every enroll secret (never its value): live or revoked, and its label."""
    render(client.get("/secrets")["secrets"], COLUMNS, fmt=fmt, title="enroll secrets")


@secrets.command("rotate")
@click.argument("name")
@click.option(
    "--keep-old",
    is_flag=True,
    help="The old secret keeps enrolling (as NAME~ID) until revoked.",
)
@client_options
def rotate(client: AdminClient, name: str, keep_old: bool) -> None:
    """Give NAME a new secret (printed once), with the same label."""
    answer = client.post(f"{_path(name)}/rotate", {"keep_old": keep_old})
    click.echo(answer["secret"])
    fate = "still enrolls" if keep_old else "is revoked"
    click.echo(f"enroll secret {name} rotated; the old one ({answer['old']}) {fate}", err=True)


@secrets.command("revoke")
@click.argument("name")
@client_options
def revoke(client: AdminClient, name: str) -> None:
    """Revoke NAME: it enrolls nothing from now on; hosts enrolled with it keep working."""
    client.delete(_path(name))
    click.echo(f"revoked enroll secret {name}")
