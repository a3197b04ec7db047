"""``fleetctl users add|list|show|disable|enable|set-role|set-password`` (admin only)."""

from __future__ import annotations

from urllib.parse import quote

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.groups import Group
from fleetctl.cli.output import output_options, render
from fleetctl.roles import NAMES

COLUMNS = ("name", "role", "disabled", "has_password", "created_at")


def _path(name: str, action: str = "") -> str:
    return f"/users/{quote(name, safe='')}" + (f"/{action}" if action else "")


def _said(answer: dict[str, object]) -> None:
    """Print the user as changed, and a generated password (shown this once)."""
    user = answer["user"]
    assert isinstance(user, dict)
    state = "disabled" if user["disabled"] else "enabled"
    click.echo(f"{user['name']}: {user['role']}, {state}")
    if "password" in answer:
        click.echo(f"password (shown once): {answer['password']}")


@click.group(cls=Group)
def users() -> None:
    """Who may use the admin API, and with which role."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(NAMES), required=True)
@click.option(
    "--password",
    default=None,
    help="Default: generate one and print it once.",
)
@client_options
def add(client: AdminClient, name: str, role: str, password: str | None) -> None:
    """Add user NAME with a role: observer reads, hunter also queries and triages, admin
    does everything."""
    body = {"name": name, "role": role} | ({"password": password} if password else {})
    _said(client.post("/users", body))


@users.command("list")
@client_options
@output_options
def list_users(client: AdminClient, fmt: str) -> None:
    """Every user with their role."""
    render(client.get("/users")["users"], COLUMNS, fmt=fmt, title="users")


@users.command("show")
@click.argument("name")
@client_options
@output_options
def show(client: AdminClient, name: str, fmt: str) -> None:
    """User NAME with their live tokens (`fleetctl tokens list --user NAME`: all of them)."""
    answer = client.get(_path(name))
    live = [t["name"] for t in answer["tokens"] if t["state"] == "live"]
    render([answer["user"] | {"tokens": ", ".join(live)}], (*COLUMNS, "tokens"), fmt=fmt)


@users.command("disable")
@click.argument("name")
@client_options
def disable(client: AdminClient, name: str) -> None:
    """Refuse NAME's sign-ins and every token of theirs, at once."""
    _said(client.post(_path(name, "disable"), {}))


@users.command("enable")
@click.argument("name")
@client_options
def enable(client: AdminClient, name: str) -> None:
    """Let NAME sign in again; their tokens not revoked or expired work again."""
    _said(client.post(_path(name, "enable"), {}))


@users.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(NAMES))
@client_options
def set_role(client: AdminClient, name: str, role: str) -> None:
    """Give NAME another role; their tokens are capped by it at once."""
    _said(client.post(_path(name, "role"), {"role": role}))


@users.command("set-password")
@click.argument("name")
@click.option(
    "--password",
    default=None,
    help="Default: generate one and print it once.",
)
@client_options
def set_password(client: AdminClient, name: str, password: str | None) -> None:
    """Give NAME a new password."""
    _said(client.post(_path(name, "password"), {"password": password} if password else {}))
