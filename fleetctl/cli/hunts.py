"""``fleetctl hunt create|list|show|pause|resume|cancel|delete|results``: fleet hunts."""

from __future__ import annotations

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.groups import Group
from fleetctl.cli.options import skip_missing_option
from fleetctl.cli.output import output_options, render
from fleetctl.timeutil import parse_duration


@click.group(cls=Group)
def hunt() -> None:
    """Scheduled hunts: each firing queues a query for every target, offline ones too."""


@hunt.command("create")
@click.argument("name")
@click.option("--sql", default=None, help="The SQL to run.")
@click.option("--query", "pack_query", default=None, help="Or a pack query: PACK/QUERY.")
@click.option(
    "--targets",
    default="all",
    show_default=True,
    help="all, platform:P, label:L, host:H (comma-separated).",
)
@click.option("--cron", default=None, help="Crontab expression (UTC), e.g. '0 * * * *'.")
@click.option("--every", default=None, help="Run now, then at this interval, e.g. 15m, 6h.")
@click.option("--once", is_flag=True, help="Fire once, now.")
@click.option(
    "--expires",
    default=None,
    help="How long each run waits for offline hosts (default: the interval, or 24h).",
)
@skip_missing_option
@client_options
def create(
    client: AdminClient,
    name: str,
    sql: str | None,
    pack_query: str | None,
    targets: str,
    cron: str | None,
    every: str | None,
    once: bool,
    expires: str | None,
    skip_missing: bool,
) -> None:
    """Create hunt NAME (exactly one of --sql/--query and of --cron/--every/--once).

    Targets lacking a table the query reads (their platform has none, or their osqueryd
    does not report the extension table) are listed and the hunt is not created, unless
    --skip-missing: then every run records such hosts as skipped and sends them nothing.
    """
    if sum(x is not None for x in (cron, every, once or None)) != 1:
        raise click.UsageError("give exactly one of --cron, --every and --once")
    body: dict[str, object] = {"name": name, "targets": targets, "skip_missing": skip_missing}
    if sql is not None:
        body["sql"] = sql
    if pack_query is not None:
        body["query"] = pack_query
    try:
        if every is not None:
            body["every"] = parse_duration(every)
        if expires is not None:
            body["expires"] = parse_duration(expires)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if cron is not None:
        body["cron"] = cron
    if once:
        body["once"] = True
    answer = client.post("/hunts", body, live="a hunt")
    click.echo(
        f"hunt {answer['hunt']['name']}: {answer['hunt']['schedule']}, "
        f"targets {answer['hunt']['targets']}"
    )


@hunt.command("list")
@client_options
@output_options
def list_hunts(client: AdminClient, fmt: str) -> None:
    """Hunts with their schedule, state and runs."""
    answer = client.get("/hunts")
    render(
        answer["hunts"],
        ("name", "state", "schedule", "targets", "runs", "last_run", "next_run"),
        fmt,
        title="hunts",
    )


@hunt.command("show")
@click.argument("name")
@client_options
@output_options
def show(client: AdminClient, name: str, fmt: str) -> None:
    """A hunt and its runs, with how many target hosts are in each state.

    States: queued, sent, done, failed (osquery's error), expired (never answered), skipped
    (lacks a table the hunt reads; never sent)."""
    answer = client.get(f"/hunts/{name}")
    if fmt == "json":
        render([answer], fmt=fmt)
        return
    render([answer["hunt"]], fmt=fmt, title="hunt")
    render(
        answer["runs"],
        ("run", "fired", "queued", "sent", "done", "failed", "expired", "skipped"),
        fmt,
        title="runs",
    )


def _state_command(action: str) -> click.Command:
    @click.command(action)
    @click.argument("name")
    @client_options
    def command(client: AdminClient, name: str) -> None:
        answer = client.post(f"/hunts/{name}/{action}", {}, live="a hunt")
        click.echo(f"hunt {answer['hunt']['name']}: {answer['hunt']['state']}")

    command.help = f"{action.capitalize()} a hunt."
    return command


for _action in ("pause", "resume", "cancel"):
    hunt.add_command(_state_command(_action))


@hunt.command("delete")
@click.argument("name")
@client_options
def delete(client: AdminClient, name: str) -> None:
    """Delete hunt NAME, stopping it, with its runs and their results; the name can then
    be used again."""
    answer = client.delete(f"/hunts/{name}")
    click.echo(f"hunt {answer['hunt']}: {answer['action']} ({answer['runs']} run(s))")


@hunt.command("results")
@click.argument("name")
@click.option("--run", "run", type=int, default=None, help="Run number (default: latest).")
@click.option("--diff", is_flag=True, help="Only rows new on each host since its last run.")
@click.option("--offset", default=0, show_default=True)
@click.option("--limit", default=1000, show_default=True)
@client_options
@output_options
def results(
    client: AdminClient,
    name: str,
    run: int | None,
    diff: bool,
    offset: int,
    limit: int,
    fmt: str,
) -> None:
    """Rows of a hunt run, one line per row with its host; each host whose osquery failed
    the query is named with its error on stderr, and the exit status is then 1."""
    answer = client.get(
        f"/hunts/{name}/results", run=run, diff="1" if diff else None, offset=offset, limit=limit
    )
    if answer["run"] is None:
        raise click.ClickException(f"hunt {name} has not run yet (see `fleetctl hunt show {name}`)")
    render(answer["rows"], fmt=fmt, title=f"{name} run {answer['run']}")
    shown = offset + len(answer["rows"])
    if shown < answer["total"]:
        click.echo(f"({shown} of {answer['total']} rows; --offset {shown} for more)", err=True)
    for skipped in answer["skipped"]:
        click.echo(f"{skipped['host']}: skipped: {skipped['reason']}", err=True)
    for failure in answer["failed"]:
        click.echo(f"{failure['host']}: error: {failure['error']}", err=True)
    if answer["failed"]:
        raise click.ClickException(
            f"{len(answer['failed'])} host(s) failed to run hunt {name} run {answer['run']}"
        )
