"""``fleetctl serve``: the fleet server (osquery TLS API + admin API)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from fleetctl.errors import FleetError
from fleetctl.server.bootstrap import prepare
from fleetctl.server.runner import make_server
from fleetctl.server.state import ServerState
from fleetctl.settings import (
    DEFAULT_LEARNING_WINDOW,
    SETTINGS,
    Settings,
    default_home,
    parse_listen,
)
from fleetctl.timeutil import format_duration, parse_duration

LISTENER = (
    "handshake_timeout",
    "header_timeout",
    "body_timeout",
    "keep_alive_timeout",
    "max_connections_per_address",
)


def setting_option(name: str) -> Callable[[Any], Any]:
    """A ``--name`` option whose default and help come from ``SETTINGS``: positive seconds
    for a float setting, a count of at least 1 for an int one."""
    default, help_text = next((d, h) for n, d, h in SETTINGS if n == name)
    kind = (
        click.FloatRange(min=0, min_open=True)
        if isinstance(default, float)
        else click.IntRange(min=1)
    )
    flag = "--" + name.replace("_", "-")
    return click.option(flag, name, type=kind, default=default, show_default=True, help=help_text)


def listener_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The listener's timeouts and per-address limit, one option per setting."""
    for name in reversed(LISTENER):
        command = setting_option(name)(command)
    return command


@click.command()
@click.option(
    "--db",
    "db",
    envvar="FLEETCTL_DB",
    default=None,
    help="Database URL (default: sqlite:///<home>/fleet.db).",
)
@click.option(
    "--analyst-db",
    "analyst_db",
    envvar="FLEETCTL_ANALYST_DB",
    default=None,
    help="PostgreSQL URL of a hand-made analyst role for `fleetctl sql`"
    " (default: <database>_analyst, made by `fleetctl db upgrade`).",
)
@click.option("--listen", default="127.0.0.1:8443", show_default=True, help="HOST:PORT.")
@click.option(
    "--enroll-secret",
    "enroll_secrets",
    multiple=True,
    help="Accepted enroll secret (repeatable). Default: generate one on first start.",
)
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--max-body",
    default=16 * 1024 * 1024,
    show_default=True,
    help="Largest request body after decompression, in bytes.",
)
@click.option(
    "--learning-window",
    default=format_duration(DEFAULT_LEARNING_WINDOW),
    show_default=True,
    help="How long a new host (and a new fleet) only learns execution paths.",
)
@click.option(
    "--max-carve",
    default=512 * 1024 * 1024,
    show_default=True,
    type=click.IntRange(min=0),
    help="Largest file carve a host may announce, in bytes.",
)
@click.option(
    "--carve-timeout",
    default="1h",
    show_default=True,
    help="Expire a carve (and delete its blocks) when no block came for this long.",
)
@listener_options
@click.option("-v", "--verbose", is_flag=True, help="Log every enrollment and error.")
def serve(
    db: str | None,
    analyst_db: str | None,
    listen: str,
    enroll_secrets: tuple[str, ...],
    tls_cert: Path | None,
    tls_key: Path | None,
    max_body: int,
    learning_window: str,
    max_carve: int,
    carve_timeout: str,
    verbose: bool,
    **listener: Any,
) -> None:
    """Serve osquery's TLS remote API and the admin API.

    Data lives in $FLEETCTL_HOME (default: the platform's user data dir). On first
    start this creates a TLS certificate, an enroll secret and an admin token, and
    writes the osqueryd flags file printed below.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    try:
        window = parse_duration(learning_window)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--learning-window") from exc
    try:
        stall = parse_duration(carve_timeout)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--carve-timeout") from exc
    settings = Settings(
        home=default_home(),
        listen=listen,
        db=db,
        analyst_db=analyst_db,
        max_body=max_body,
        tls_cert=tls_cert,
        tls_key=tls_key,
        enroll_secrets=enroll_secrets,
        learning_window=window,
        max_carve=max_carve,
        carve_timeout=stall,
        **listener,
    )
    try:
        prepared = prepare(settings)
    except FleetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"fleetctl server on {prepared.server_url}  (database {settings.db_url})")
    click.echo(f"client context: {prepared.context_path}")
    click.echo(f"osqueryd flags ({prepared.flags_path}):\n")
    click.echo(prepared.flags_path.read_text())
    state = ServerState.create(settings)
    try:
        make_server(settings, prepared, state).run()
    finally:
        state.close()
