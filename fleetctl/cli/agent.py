"""``fleetctl agent``: run this host as an osquery agent of a fleet server.

With no flags it uses what ``fleetctl serve`` wrote under ``$FLEETCTL_HOME``: the
osquery flags file (server, CA, secret path, endpoints, periods), ``context.json``
(server URL and CA) and ``enroll_secret``. Flags given here win over those files.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from fleetctl.agent import Agent, AgentOptions, EngineError, select_engine
from fleetctl.agent.engines import describe
from fleetctl.agent.enroll import IDENTIFIER_MODES
from fleetctl.agent.flagfile import FlagFile, read_flagfile
from fleetctl.settings import default_home


def _context(home: Path) -> dict[str, str]:
    path = home / "context.json"
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _flagfile(path: str | None, home: Path) -> FlagFile:
    candidate = Path(path) if path else home / "osquery.flags"
    if path or candidate.exists():
        try:
            return read_flagfile(candidate)
        except OSError as exc:
            raise click.ClickException(f"cannot read the flag file {candidate}: {exc}") from exc
    return FlagFile()


def _first_file(*paths: str | Path | None) -> Path | None:
    for path in paths:
        if path and Path(path).is_file():
            return Path(path)
    return None


@click.command("agent")
@click.option(
    "--server",
    help="Server URL, e.g. https://127.0.0.1:8443 "
    "(default: the flag file's --tls_hostname, else context.json).",
)
@click.option(
    "--enroll-secret-path",
    type=click.Path(dir_okay=False),
    help="File holding the enroll secret (default: $FLEETCTL_HOME/enroll_secret).",
)
@click.option("--tls-server-certs", help="CA bundle the server certificate must chain to.")
@click.option(
    "--engine",
    type=click.Choice(["auto", "embedded", "osquery"]),
    default="auto",
    show_default=True,
    help="Where queries run; auto uses osqueryd when present.",
)
@click.option(
    "--stock",
    is_flag=True,
    help="Behave as a stock osqueryd: osquery's own tables only, as osquery reports "
    "them (no process_stdio, no unix_socket_peers).",
)
@click.option("--osquery-socket", help="A running osqueryd's extensions socket.")
@click.option("--osqueryd", help="osqueryd binary to spawn for queries.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False),
    help="Node key, previous results and the log buffer (default: $FLEETCTL_HOME/agent).",
)
@click.option(
    "--host-identifier",
    default=None,
    help=f"{'|'.join(IDENTIFIER_MODES[:4])}, or a name of your choice.",
)
@click.option(
    "--interval",
    type=click.IntRange(min=1),
    help="Run every scheduled query at this interval (seconds) instead of its own.",
)
@click.option(
    "--config-refresh",
    type=click.IntRange(min=0),
    help="Seconds between config fetches (default: the flag file's, else 0: once).",
)
@click.option("--flagfile", help="osqueryd flags file (default: $FLEETCTL_HOME/osquery.flags).")
@click.option(
    "--once",
    is_flag=True,
    help="Run every scheduled query once, answer distributed queries, flush, exit.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log what the agent does to stderr.")
def agent(
    server: str | None,
    enroll_secret_path: str | None,
    tls_server_certs: str | None,
    engine: str,
    stock: bool,
    osquery_socket: str | None,
    osqueryd: str | None,
    state_dir: str | None,
    host_identifier: str | None,
    interval: int | None,
    config_refresh: int | None,
    flagfile: str | None,
    once: bool,
    verbose: bool,
) -> None:
    """Enroll with a fleet server and run its schedule like osqueryd with the TLS plugins."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    home = default_home()
    flags_file = _flagfile(flagfile, home)
    context = _context(home)
    url = server or flags_file.server or context.get("server")
    if not url:
        raise click.ClickException(
            "no server: pass --server, or run `fleetctl serve` first (it writes "
            f"{home / 'osquery.flags'} and {home / 'context.json'})"
        )
    secret = _first_file(enroll_secret_path, flags_file.enroll_secret_path, home / "enroll_secret")
    if secret is None:
        raise click.ClickException("no enroll secret: pass --enroll-secret-path FILE")
    flags: dict[str, Any] = dict(flags_file.flags)
    if host_identifier:
        if host_identifier in IDENTIFIER_MODES:
            flags["host_identifier"] = host_identifier
        else:
            flags["host_identifier"], flags["specified_identifier"] = "specified", host_identifier
    if config_refresh is not None:
        flags["config_refresh"] = config_refresh
    options = AgentOptions(
        server=url,
        enroll_secret_path=secret,
        state_dir=Path(state_dir) if state_dir else home / "agent",
        ca=tls_server_certs or flags_file.ca or context.get("ca"),
        endpoints=flags_file.endpoints,
        flags=flags,
        interval=interval,
        distributed=flags_file.distributed is not False,
    )
    try:
        query_engine = select_engine(engine, socket=osquery_socket, osqueryd=osqueryd, stock=stock)
    except EngineError as exc:
        raise click.ClickException(exc.message) from exc
    runner = Agent(options, query_engine)
    if once:
        delivered = runner.run_once()
        remaining = runner.buffer.count()
        runner.stop()
        if not delivered:
            click.echo(
                f"{remaining} log lines stay buffered in "
                f"{options.state_dir}; they are sent on the next run",
                err=True,
            )
            sys.exit(1)
        return
    _run_until_signalled(runner)


def _run_until_signalled(runner: Agent) -> None:
    stopped = threading.Event()

    def handle(signum: int, frame: object) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    runner.start()
    click.echo(
        f"agent running against {runner.options.server} "
        f"(engine {describe(runner.engine)}); stop with Ctrl-C",
        err=True,
    )
    while not stopped.wait(1.0):
        pass
    runner.stop()
