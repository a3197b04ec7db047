"""``fleetctl up``: the whole pipeline on this machine, for real.

Starts the fleet server on the embedded SQLite store under ``$FLEETCTL_HOME``, applies
the shipped packs, enrolls an agent for this host over osquery's TLS protocol,
collects, and shows what the server now knows: hosts, rows per query, and the IPC
channels feeding processes (stdin/stdout/stderr connected to another process). It says
when this host's learning window ends: until then new paths are only learned, and only
paths that look like an attack on their own become findings.
"""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console

from fleetctl.agent.engines import describe
from fleetctl.cli.client import AdminClient
from fleetctl.cli.local import LocalFleet
from fleetctl.cli.options import setting_option
from fleetctl.cli.output import render
from fleetctl.errors import FleetError
from fleetctl.settings import SettingError, default_home, from_options

STDIO_QUERY = "pack_ipc-telemetry-extension_process_stdio"
#: The same channels from osquery's own tables, for an agent without the extension.
STOCK_STDIO_QUERY = "pack_ipc-telemetry_stdio_channels"
IPC_KINDS = ("pipe", "fifo", "unix", "tcp", "udp")
AGENT_FLAGS = {
    "config_refresh": 10,
    "logger_tls_period": 1,
    "distributed_interval": 5,
    "host_identifier": "hostname",
}


@click.command()
@click.option(
    "--once",
    is_flag=True,
    help="Exit after the first full collection cycle has reached the server.",
)
@click.option(
    "--interval",
    type=click.IntRange(min=1),
    default=None,
    help="Run every scheduled query at this interval (seconds) instead of its own.",
)
@setting_option("listen")
@click.option(
    "--engine",
    type=click.Choice(["auto", "embedded", "osquery"]),
    default="auto",
    show_default=True,
    help="Where the agent's queries run.",
)
@click.option(
    "--stock",
    is_flag=True,
    help="Run the agent as a stock osqueryd: osquery's own tables only, as osquery "
    "reports them (no process_stdio, no unix_socket_peers).",
)
@click.option(
    "--refresh",
    default=15,
    show_default=True,
    help="Seconds between summaries when running continuously.",
)
@setting_option(
    "learning_window", help="How long this host's execution paths are only learned, not judged."
)
def up(
    once: bool,
    interval: int | None,
    listen: str,
    engine: str,
    stock: bool,
    refresh: int,
    learning_window: str,
) -> None:
    """Run server, packs and a local agent on this machine and show what they collect."""
    console = Console(stderr=True)
    try:
        settings = from_options(
            {"listen": listen, "learning_window": learning_window}, home=default_home()
        )
    except SettingError as exc:
        raise click.BadParameter(str(exc)) from exc
    fleet = LocalFleet(settings, engine=engine, interval=interval, stock=stock)
    try:
        with console.status("starting the server and applying the shipped packs"):
            fleet.start()
        assert fleet.client is not None and fleet.agent is not None
        console.print(
            f"server {fleet.client.context.server} (store {settings.db_url}); "
            f"{len(fleet.applied)} packs applied",
            soft_wrap=True,
        )
        console.print(
            f"web console: {fleet.client.context.server}/ (user admin, password in "
            f"{settings.home / 'admin_password'})",
            soft_wrap=True,
        )
        console.print(
            f"agent engine: {describe(fleet.agent.engine)}; state in {settings.home / 'agent'}",
            soft_wrap=True,
        )
        if once:
            started = time.monotonic()
            with console.status("collecting: every scheduled query once, then delivering"):
                fleet.collect()
            console.print(f"first collection cycle delivered in {time.monotonic() - started:.1f} s")
            summarize(fleet.client, stock)
            fleet.judged()  # detection runs right after delivery
            print_new_findings(fleet.client, set())
            print_learning(fleet.client, console, set())
            return
        fleet.agent.start()
        console.print(
            f"collecting; a summary every {refresh} s, findings as they appear (Ctrl-C to stop)"
        )
        shown: set[str] = set()
        told: set[int] = set()
        next_summary = time.monotonic() + refresh
        while True:
            time.sleep(1)
            print_new_findings(fleet.client, shown)
            if not told:  # until the agent has enrolled
                print_learning(fleet.client, console, told)
            if time.monotonic() >= next_summary:
                summarize(fleet.client, stock)
                next_summary = time.monotonic() + refresh
    except FleetError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        console.print("stopping")
    finally:
        fleet.stop()


def print_new_findings(client: AdminClient, shown: set[str]) -> None:
    """Print medium-or-worse findings not printed before (one table per batch)."""
    fresh = [
        f
        for f in client.get("/findings", status="open", min_severity="medium")["findings"]
        if f["id"] not in shown
    ]
    if fresh:
        shown.update(f["id"] for f in fresh)
        render(
            fresh,
            ("id", "severity", "score", "pid", "parent", "child", "reasons"),
            title="new findings",
        )


def print_learning(client: AdminClient, console: Console, told: set[int]) -> None:
    """Say, once per host, where it stands with detection and when its learning ends."""
    for host in client.get("/hosts")["hosts"]:
        if host["id"] in told:
            continue
        told.add(host["id"])
        if host["learning_until"]:
            console.print(
                f"detection on {host['host_identifier']}: learning until "
                f"{host['learning_until']}; until then its new paths are learned, and only "
                "those that look like an attack on their own become findings (`fleetctl "
                "detect --learn` ends learning now)",
                soft_wrap=True,
            )
        else:
            console.print(f"detection on {host['host_identifier']}: {host['detection']}")


def summarize(client: AdminClient, stock: bool = False) -> None:
    """Print hosts, rows per query and the IPC channels feeding processes (from the
    extension's process_stdio, or from the stock stdio_channels query with ``stock``)."""
    hosts = client.get("/hosts")["hosts"]
    render(
        hosts,
        (
            "id",
            "host_identifier",
            "platform",
            "os_version",
            "osquery_version",
            "last_seen",
            "detection",
        ),
        title="hosts",
    )
    for host in hosts:
        detail = client.get(f"/hosts/{host['id']}")
        render(
            detail["queries"],
            ("name", "counter", "open_rows", "last_result"),
            title=f"rows per query on {host['host_identifier']}",
        )
        render(
            ipc_channels(client, str(host["id"]), STOCK_STDIO_QUERY if stock else STDIO_QUERY),
            ("pid", "name", "fd", "kind", "target", "partner_pid", "partner_fd", "partner_name"),
            title=f"IPC channels feeding processes on {host['host_identifier']}",
        )


def ipc_channels(client: AdminClient, host: str, query: str = STDIO_QUERY) -> list[dict[str, Any]]:
    """stdio fds connected through a pipe, FIFO or socket to another process."""
    rows = client.get("/results", host=host, query=query)["rows"]
    return sorted(
        (
            r
            for r in rows
            if r.get("kind") in IPC_KINDS
            and r.get("partner_pid") not in ("", "-1", None)
            and r.get("partner_pid") != r.get("parent")
        ),
        key=lambda r: (int(r["pid"]), int(r["fd"])),
    )
