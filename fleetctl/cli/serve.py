"""``fleetctl serve``: the fleet server (osquery TLS API + admin API)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import click

from fleetctl.cli.options import server_options
from fleetctl.errors import FleetError
from fleetctl.server.bootstrap import apply_shipped_packs_to_a_new_store, prepare
from fleetctl.server.runner import bind
from fleetctl.server.state import WorkerRole
from fleetctl.server.supervisor import Supervisor, exit_on_sigterm, log_format, serve_on
from fleetctl.settings import SettingError, default_home, from_options


@click.command()
@server_options
@click.option("-v", "--verbose", is_flag=True, help="Log every enrollment and error.")
def serve(verbose: bool, **options: Any) -> None:
    """Serve osquery's TLS remote API and the admin API.

    Data lives in $FLEETCTL_HOME (default: the platform's user data dir). On first
    start this creates a TLS certificate, an enroll secret and an admin token, and
    writes the osqueryd flags file printed below.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=log_format())
    try:
        settings = from_options(options, home=default_home())
    except SettingError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from exc
    try:
        prepared = prepare(settings)
    except FleetError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"fleetctl server on {prepared.server_url}  (database {settings.db_url})")
    click.echo(f"client context: {prepared.context_path}")
    if prepared.admin_password_path:
        click.echo(
            f"first admin: user admin, password in {prepared.admin_password_path}"
            " (`fleetctl login --user admin` signs in with it)"
        )
    click.echo(f"web console: {prepared.server_url}/")
    shipped = apply_shipped_packs_to_a_new_store(settings)
    if shipped:
        click.echo(
            f"new store: applied the shipped packs ({', '.join(shipped)});"
            " `fleetctl packs list` shows them, `fleetctl packs delete` removes one"
        )
    click.echo(f"osqueryd flags ({prepared.flags_path}):\n")
    click.echo(prepared.flags_path.read_text())
    try:
        listener = bind(*settings.host_port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {settings.listen}: {exc.strerror}") from exc
    workers = settings.worker_count
    if workers == 1 and not settings.judge_process_count:
        exit_on_sigterm()
        with contextlib.suppress(SystemExit):
            serve_on(settings, prepared, listener, WorkerRole())
        return
    judges = settings.judge_process_count
    click.echo(f"{workers} worker process{'es' if workers > 1 else ''} on one listener")
    if judges:
        click.echo(f"{judges} detection process{'es' if judges > 1 else ''} judging the hosts")
    Supervisor(settings, prepared, workers, listener).run()
