"""``fleetctl login``: sign in as a user and keep the token in the context file."""

from __future__ import annotations

import click
import httpx

from fleetctl.cli.client import ClientError, ssl_context, store_context, stored_context


@click.command()
@click.option("--user", required=True, help="Your user name.")
@click.option(
    "--password",
    default=None,
    envvar="FLEETCTL_PASSWORD",
    help="Asked for, unechoed, when not given (env FLEETCTL_PASSWORD).",
)
@click.option("--name", default="login", show_default=True, help="The new token's name.")
@click.option(
    "--ttl", default="12h", show_default=True, help="How long the token lasts, at most 24h."
)
@click.option("--server", envvar="FLEETCTL_SERVER", help="Server URL (default: the context's).")
@click.option("--ca", envvar="FLEETCTL_CA", help="CA bundle (default: the context's).")
def login(
    user: str, password: str | None, name: str, ttl: str, server: str | None, ca: str | None
) -> None:
    """Sign in: get a token of your user and keep it in the context file.

    Every later client command uses that token, with your role, until it expires (a
    sign-in always does), and a token you make with it expires no later. Signing in
    again under the same --name replaces the token; failed attempts are slowed and
    recorded."""
    stored = stored_context()
    server = (server or stored.get("server") or "").rstrip("/")
    ca = ca or stored.get("ca")
    if not server:
        raise ClientError("no server to sign in to: pass --server (or FLEETCTL_SERVER)")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    body = {"user": user, "password": password, "name": name, "ttl": ttl}
    try:
        with httpx.Client(base_url=server, verify=ssl_context(ca), timeout=30) as http:
            answer = http.post("/api/v1/admin/login", json=body)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {server}: {exc}") from exc
    try:
        payload = answer.json()
    except ValueError as exc:
        raise ClientError(f"server answered HTTP {answer.status_code} without JSON") from exc
    if answer.status_code != 200:
        raise ClientError(str(payload.get("error", payload)))
    values = {"server": server, "token": payload["token"]} | ({"ca": ca} if ca else {})
    path = store_context(**values)
    expires = payload["expires_at"] or "never"
    click.echo(f"signed in as {payload['user']} ({payload['role']}); token {name} until {expires}")
    click.echo(f"kept in {path}")
