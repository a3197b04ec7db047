"""``fleetctl query``: a live query that returns as soon as every online target answered."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.options import skip_missing_option
from fleetctl.cli.output import output_options, render
from fleetctl.timeutil import parse_duration


@click.command()
@click.argument("sql")
@click.option(
    "--targets",
    default="all",
    show_default=True,
    help="all, platform:P, label:L, host:H (comma-separated).",
)
@click.option(
    "--timeout",
    "timeout_text",
    default="60s",
    show_default=True,
    help="Stop waiting (and stop sending to offline hosts) after this long.",
)
@skip_missing_option
@client_options
@output_options
@click.pass_context
def query(
    ctx: click.Context,
    client: AdminClient,
    sql: str,
    targets: str,
    timeout_text: str,
    skip_missing: bool,
    fmt: str,
) -> None:
    """Run SQL on the targeted hosts now; rows are printed as hosts answer.

    Returns when every target that is online has answered, or at the timeout; hosts
    that fail show osquery's error. Progress (answered / online / targeted) goes to stderr.
    Before anything is sent, each target is checked for the tables the query reads (its
    platform's, and the extension tables its osqueryd reports); hosts that lack one are
    listed and nothing is sent, unless --skip-missing.
    """
    try:
        timeout = parse_duration(timeout_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--timeout") from exc
    started = client.post(
        "/queries",
        {"sql": sql, "targets": targets, "timeout": timeout, "skip_missing": skip_missing},
        live="a live query",
    )
    qid = started["id"]
    click.echo(f"query {qid}: {started['targeted']} targeted, {started['online']} online", err=True)
    status, rows, errors = _follow(client, qid, fmt, time.monotonic() + timeout)
    click.echo(
        f"answered {status['answered']} / online {status['online']} / targeted "
        f"{status['targeted']}",
        err=True,
    )
    if fmt != "ndjson":
        render(rows, fmt=fmt, title=f"query {qid}")
    if errors:
        ctx.exit(1)


def _follow(
    client: AdminClient, qid: int, fmt: str, deadline: float
) -> tuple[dict[str, Any], list[dict[str, object]], list[dict[str, object]]]:
    """Poll the query until every online target answered (or the deadline), printing
    ndjson rows as they come; returns the last status, every row and every host error."""
    shown: set[int] = set()
    rows: list[dict[str, object]] = []
    errors: list[dict[str, object]] = []
    since = 0
    progress = _Progress()
    try:
        while True:
            status = client.get(f"/queries/{qid}", since=since)
            progress.show(status)
            for host in status["hosts"]:
                if host["host_id"] in shown:
                    continue
                shown.add(host["host_id"])
                if host["state"] == "failed":
                    errors.append({"host": host["host"], "error": host["message"]})
                    click.echo(f"{host['host']}: error: {host['message']}", err=True)
                new = [{"host": host["host"], **r} for r in host["rows"]]
                rows.extend(new)
                if fmt == "ndjson":
                    render(new, fmt="ndjson")
                    sys.stdout.flush()
            since = _next_since(status, len(shown))
            done = status["online_answered"] >= status["online"] and status["answered"] > 0
            finished = done or status["answered"] == status["targeted"]
            if (finished and len(shown) >= status["answered"]) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    finally:
        progress.close()
    return status, rows, errors


class _Progress:
    """A live "answered / online / targeted" line on a terminal's stderr; nothing when
    stderr is a file or a pipe (the final line says it once)."""

    def __init__(self) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        self._status = console.status("waiting for answers") if console.is_terminal else None
        if self._status is not None:
            self._status.start()

    def show(self, status: dict[str, Any]) -> None:
        if self._status is not None:
            self._status.update(
                f"answered {status['answered']} / online {status['online']} / "
                f"targeted {status['targeted']}"
            )

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()


# An answer is stamped (whole seconds) when its request starts and is visible once it
# commits, so the next poll starts this many seconds before the latest stamp seen.
ANSWER_COMMIT_SLACK = 1


def _next_since(status: dict[str, Any], shown: int) -> int:
    """Where the next poll starts: near the latest answer, or from the start if an answer
    committed later than the slack allows was missed (fewer shown than answered)."""
    if shown < status["answered"] or status["cursor"] is None:
        return 0
    return max(0, int(status["cursor"]) - ANSWER_COMMIT_SLACK)
