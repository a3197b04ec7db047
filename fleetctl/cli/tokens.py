"""``fleetctl tokens create|list|revoke``: named admin API tokens of a user."""

from __future__ import annotations

from urllib.parse import quote

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.groups import Group
from fleetctl.cli.output import output_options, render
from fleetctl.roles import NAMES

COLUMNS = (
    "user",
    "name",
    "role",
    "state",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
)


@click.group(cls=Group)
def tokens() -> None:
    """Named admin API tokens, each with a role and an expiry."""


@tokens.command("create")
@click.argument("name")
@click.option(
    "--ttl",
    default=None,
    help="How long it lasts, up to 365d (default: 30d, or when the token you use expires, if"
    " sooner); never past the token you use. `never`: an admin's choice, with a token that"
    " never expires itself (the first admin's, or --db).",
)
@click.option("--role", type=click.Choice(NAMES), default=None, help="Default: your role.")
@click.option("--user", default=None, help="Another user's token (an admin only).")
@client_options
def create(client: AdminClient, name: str, ttl: str, role: str | None, user: str | None) -> None:
    """Make token NAME and print it once (only its digest is kept)."""
    body = {"name": name} | ({"ttl": ttl} if ttl else {}) | ({"role": role} if role else {})
    made = client.post("/tokens", body | ({"user": user} if user else {}))
    click.echo(made["token"])
    expires = made["expires_at"] or "never"
    click.echo(f"token {made['name']} of {made['user']}, {made['role']}, until {expires}", err=True)


@tokens.command("list")
@click.option("--user", default=None, help="This user's (an admin sees everyone's without).")
@client_options
@output_options
def list_tokens(client: AdminClient, user: str | None, fmt: str) -> None:
    """Your tokens (an admin: everyone's): live, expired or revoked."""
    payload = client.get("/tokens", user=user)
    render(payload["tokens"], COLUMNS, fmt=fmt, title="tokens")


@tokens.command("revoke")
@click.argument("name")
@click.option("--user", default=None, help="Another user's token (an admin only).")
@client_options
def revoke(client: AdminClient, name: str, user: str | None) -> None:
    """Revoke token NAME: refused from now on, in every server process."""
    done = client.delete(f"/tokens/{quote(name, safe='')}", user=user)
    click.echo(f"revoked {done['user']}'s token {done['name']}")
