"""``fleetctl extension``: the command line osqueryd runs for an autoloaded extension.

osqueryd starts extensions as ``<binary> --socket PATH --timeout N --interval N
[--verbose]``; the same options are accepted here.
"""

from __future__ import annotations

import logging

import click

from fleetctl.extension.server import ExtensionError, serve


@click.command("extension")
@click.option(
    "--socket",
    "socket_path",
    default="/var/osquery/osquery.em",
    show_default=True,
    help="osqueryd's extensions socket (--extensions_socket).",
)
@click.option(
    "--timeout",
    default=1,
    show_default=True,
    type=float,
    help="Seconds to wait for the socket to accept connections.",
)
@click.option(
    "--interval",
    default=1,
    show_default=True,
    type=float,
    help="Seconds between pings to the core; the extension exits when it is gone.",
)
@click.option("--verbose", is_flag=True, help="Log registration and requests.")
def extension(socket_path: str, timeout: float, interval: float, verbose: bool) -> None:
    """Serve unix_socket_peers and process_stdio to a running osqueryd."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        serve(socket_path, timeout=timeout, interval=interval)
    except ExtensionError as error:
        raise click.ClickException(str(error)) from error
