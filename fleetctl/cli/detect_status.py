"""``fleetctl detect --status``: how far behind detection is on the server."""

from __future__ import annotations

from typing import Any

import click

from fleetctl.cli.client import AdminClient
from fleetctl.cli.output import render

STATUS_COLUMNS = (
    "running",
    "pending_hosts",
    "oldest_pending_seconds",
    "hosts_judged",
    "full_rebuilds",
    "incremental_runs",
    "rebuilds",
    "hosts_in_memory",
    "lag_p50",
    "lag_p95",
    "lag_p99",
    "lag_samples",
    "judge_p50",
    "judge_p99",
    "judges",
    "workers",
)


def status_row(answer: dict[str, Any]) -> dict[str, Any]:
    """The status object flattened into one row (lag and judge-time percentiles in
    seconds); the fleet's figures, with how many server processes reported them."""
    lag = answer.get("lag_seconds", {})
    judge = answer.get("judge_seconds", {})
    return {
        **{k: v for k, v in answer.items() if k not in ("lag_seconds", "judge_seconds", "workers")},
        "workers": len(answer.get("workers", [])) or None,
        "rebuilds": ", ".join(f"{k}={v}" for k, v in answer.get("rebuilds", {}).items()) or None,
        "lag_p50": lag.get("p50"),
        "lag_p95": lag.get("p95"),
        "lag_p99": lag.get("p99"),
        "lag_samples": lag.get("samples"),
        "judge_p50": judge.get("p50"),
        "judge_p99": judge.get("p99"),
    }


def show_status(client: AdminClient, fmt: str) -> None:
    answer = client.get("/detection/status")
    if fmt != "table":
        render([status_row(answer)], None, fmt)
        return
    if not answer.get("running"):
        click.echo("detection is not running here: start a server (`fleetctl serve` or `up`)")
        return
    row = status_row(answer)
    width = max(len(c) for c in STATUS_COLUMNS)
    for column in STATUS_COLUMNS:
        click.echo(f"{column.ljust(width)}  {row.get(column)}")
