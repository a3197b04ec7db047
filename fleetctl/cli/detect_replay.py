"""``fleetctl detect --since``/``--job``: start a replay job and follow it to its end.

A replay of history runs on the server as a job (``fleetctl.server.replay_jobs``); the
CLI starts it, then polls it with no time limit, showing its progress: a rich progress
bar when stderr is a terminal, a plain line whenever a host is done or the job ends
(or every ``PLAIN_EVERY`` seconds) otherwise. Ctrl-C detaches: the job goes on in the server and
``fleetctl detect --job ID`` follows it again. Without a server the job runs in this
process, so it is followed to its end (Ctrl-C stops it; ``--restart`` goes on later).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import click
import httpx

from fleetctl.cli.client import AdminClient, ClientError

JOBS = "/detect/jobs"
POLL = 0.5  # seconds between looks at the job
PLAIN_EVERY = 10.0  # seconds between plain progress lines while no host finishes
RETRY = 2.0  # seconds before asking again when the server did not answer
ENDED = ("done", "failed", "cancelled", "abandoned")


def start(client: AdminClient, since: str, host: str | None) -> dict[str, Any]:
    job: dict[str, Any] = client.post(JOBS, {"since": since, "host": host})["job"]
    click.echo(
        f"replay job {job['id']}: {job['hosts_total']} host(s) since {job['since']}", err=True
    )
    return job


def cancel(client: AdminClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = client.delete(f"{JOBS}/{job_id}")["job"]
    return job


def restart(client: AdminClient, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = client.post(f"{JOBS}/{job_id}/restart", {})["job"]
    click.echo(f"replay job {job_id}: going on from host {job['hosts_done'] + 1}", err=True)
    return job


def follow_hint(job_id: str) -> str:
    return (
        f"follow it with `fleetctl detect --job {job_id}`, "
        f"cancel it with `fleetctl detect --job {job_id} --cancel`"
    )


def follow(client: AdminClient, job_id: str) -> dict[str, Any]:
    """Poll the job until it ends, showing progress; the job as it ended. Ctrl-C
    detaches (``click.exceptions.Exit`` 130 after saying how to follow again)."""
    progress = Display(job_id)
    try:
        while True:
            job = _poll(client, job_id)
            progress.show(job)
            if job["state"] in ENDED:
                return job
            time.sleep(POLL)
    except KeyboardInterrupt:
        progress.close()
        if client.local:
            click.echo(
                f"\nstopped: without a server the replay ran in this process; "
                f"`fleetctl detect --job {job_id} --restart` goes on from its next host",
                err=True,
            )
        else:
            click.echo(f"\ndetached: replay job {job_id} goes on; {follow_hint(job_id)}", err=True)
        raise click.exceptions.Exit(130) from None
    finally:
        progress.close()


def _poll(client: AdminClient, job_id: str) -> dict[str, Any]:
    """The job now; a server that does not answer is asked again (no time limit)."""
    while True:
        try:
            job: dict[str, Any] = client.get(f"{JOBS}/{job_id}")["job"]
            return job
        except ClientError as exc:
            if not isinstance(exc.__cause__, httpx.TransportError):
                raise
            click.echo(f"({exc}; asking again in {RETRY:.0f}s)", err=True)
            time.sleep(RETRY)


def summary(job: Mapping[str, Any]) -> str:
    return (
        f"{job['hosts_done']}/{job['hosts_total']} host(s), "
        f"{job['times_done']}/{job['times_total']} change time(s), "
        f"{job['findings']} new finding(s), {job['elapsed_seconds']:.0f}s"
    )


class Display:
    """The job's progress on stderr: a rich bar on a terminal, else plain lines."""

    def __init__(self, job_id: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.job_id = job_id
        console = Console(stderr=True)
        self._bar: Progress | None = None
        self._task: Any = None
        self._plain: tuple[tuple[str, int] | None, float] = (None, 0.0)
        if console.is_terminal:
            self._bar = Progress(
                TextColumn("replay {task.fields[job]}"),
                BarColumn(),
                TextColumn("{task.fields[hosts]} hosts"),
                TextColumn("{task.fields[times]} change times"),
                TextColumn("{task.fields[findings]} new finding(s)"),
                TimeElapsedColumn(),
                console=console,
            )
            self._task = self._bar.add_task(
                "replay", total=None, job=job_id, hosts="0/?", times="0/?", findings=0
            )
            self._bar.start()

    def show(self, job: Mapping[str, Any]) -> None:
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=job["times_done"],
                total=job["times_total"] or None,
                hosts=f"{job['hosts_done']}/{job['hosts_total']}",
                times=f"{job['times_done']}/{job['times_total'] or '?'}",
                findings=job["findings"],
            )
            return
        shown, at = self._plain
        now = (job["state"], job["hosts_done"])
        if now != shown or time.monotonic() - at >= PLAIN_EVERY:
            click.echo(f"replay {self.job_id}: {job['state']}, {summary(job)}", err=True)
            self._plain = (now, time.monotonic())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def outcome(job: Mapping[str, Any], render_findings: Callable[[list[str]], None]) -> None:
    """What a replay ends with: its new findings as ``detect`` prints them; a job that
    did not finish is an error, saying how far it got and how to go on."""
    if job["state"] == "done":
        render_findings(list(job["new_findings"]))
        return
    why = f": {job['error']}" if job.get("error") else ""
    hint = ""
    if job["state"] in ("failed", "abandoned"):
        hint = f"; `fleetctl detect --job {job['id']} --restart` goes on from its next host"
    raise click.ClickException(f"replay job {job['id']} {job['state']}{why} ({summary(job)}){hint}")
