"""``fleetctl hosts``, ``results``, ``status-logs``, ``data-loss``, ``carves``: read the store."""

from __future__ import annotations

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.groups import Group
from fleetctl.cli.output import output_options, render

# The table's columns; ``detection`` is where the host stands: ``learning until T`` (new
# paths are only learned), ``judging``, or ``baseline T`` (explicit, `detect --learn`).
HOST_COLUMNS = (
    "id",
    "host_identifier",
    "hostname",
    "platform",
    "os_version",
    "osquery_version",
    "enrolled_at",
    "last_seen",
    "enroll_count",
    "detection",
)


@click.group(cls=Group)
def hosts() -> None:
    """Enrolled hosts."""


@hosts.command("list")
@client_options
@output_options
def hosts_list(client: AdminClient, fmt: str) -> None:
    """List enrolled hosts, each with its detection state (learning until when, judging,
    or an explicit baseline); a warning column when some say more (cloned machines)."""
    payload = client.get("/hosts")
    columns: tuple[str, ...] | None = None
    if fmt == "table":
        warned = any(h.get("warning") for h in payload["hosts"])
        columns = (*HOST_COLUMNS, "warning") if warned else HOST_COLUMNS
    render(payload["hosts"], columns, fmt=fmt, title="hosts")


@hosts.command("show")
@click.argument("host")
@client_options
@output_options
def hosts_show(client: AdminClient, host: str, fmt: str) -> None:
    """Show one host (id, identifier, hostname or uuid) and its queries."""
    payload = client.get(f"/hosts/{host}")
    if fmt == "json":
        render([payload], fmt=fmt)
        return
    render([payload["host"]], fmt=fmt, title="host")
    render(payload["queries"], fmt=fmt, title="queries")


@hosts.command("delete")
@click.argument("host")
@click.option(
    "--keep-history",
    is_flag=True,
    help="Keep the host and its history; only revoke its node key, so it must enroll again.",
)
@client_options
def hosts_delete(client: AdminClient, host: str, keep_history: bool) -> None:
    """Delete HOST (id, identifier, hostname or uuid) with its history: results, status
    logs, data-loss markers, carves, findings, label memberships and query answers.

    Its node key stops working at once; an osqueryd still running there enrolls again
    as a new host.
    """
    answer = client.delete(f"/hosts/{host}", keep_history="true" if keep_history else None)
    click.echo(f"host {answer['host']} (id {answer['id']}): {answer['action']}")


@click.command()
@click.option("--host", "host", required=True, help="Host id, identifier, hostname or uuid.")
@click.option("--query", "query", required=True, help="Query name as osquery logs it.")
@click.option("--at", "at", default=None, help="Unix seconds or ISO 8601 (default: now).")
@client_options
@output_options
def results(
    client: AdminClient,
    host: str,
    query: str,
    at: str | None,
    fmt: str,
) -> None:
    """Rows of QUERY that existed on HOST at a time."""
    payload = client.get("/results", host=host, query=query, at=at)
    columns = [*payload["columns"], "first_seen", "removed_at"]
    render(
        payload["rows"],
        columns,
        fmt=fmt,
        title=f"{payload['query']} on {payload['host']} at {payload['at']}",
    )


@click.command("status-logs")
@click.option("--host", "host", required=True, help="Host id, identifier, hostname or uuid.")
@click.option("--limit", default=100, show_default=True, help="Newest N lines.")
@client_options
@output_options
def status_logs(client: AdminClient, host: str, limit: int, fmt: str) -> None:
    """osqueryd status log lines of a host, newest first."""
    payload = client.get("/status-logs", host=host, limit=limit)
    render(payload["status_logs"], fmt=fmt, title="status logs")


@click.command("data-loss")
@click.option("--host", "host", default=None, help="Only this host.")
@click.option(
    "--rejected", is_flag=True, help="Only quarantined log lines, each with the line as sent."
)
@client_options
@output_options
def data_loss(
    client: AdminClient,
    host: str | None,
    rejected: bool,
    fmt: str,
) -> None:
    """What the store lacks: counter gaps, epoch changes, rebaselines, and log lines it
    quarantined instead of storing (kind ``rejected``; ``--rejected`` shows the lines)."""
    payload = client.get("/data-loss", host=host)
    if rejected:
        render(payload["rejected"], fmt=fmt, title="quarantined log lines")
        return
    quarantined = [
        {
            "id": r["id"],
            "host": r["host"],
            "query": r["query"],
            "kind": "rejected",
            "detail": f"{r['log_type']} line: {r['reason']}",
            "at": r["at"],
        }
        for r in payload["rejected"]
    ]
    render([*payload["data_loss"], *quarantined], fmt=fmt, title="data loss")


@click.command()
@client_options
@output_options
def carves(client: AdminClient, fmt: str) -> None:
    """File carve sessions and their progress.

    State: receiving, complete (the archive is stored) or expired (no block came for the
    server's --carve-timeout; its blocks were deleted).
    """
    payload = client.get("/carves")
    render(payload["carves"], fmt=fmt, title="carves")
