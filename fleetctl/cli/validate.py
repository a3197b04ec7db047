"""``fleetctl validate``: purple-team check of detection on this machine."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from fleetctl.cli.client import AdminClient, ClientError, client_options
from fleetctl.cli.local import LocalFleet
from fleetctl.cli.output import output_options, render
from fleetctl.errors import FleetError
from fleetctl.settings import Settings
from fleetctl.validate import SCENARIOS, Outcome, cpu_burners, run_scenarios
from fleetctl.validate.scenarios import free_port


@click.command()
@click.option(
    "--scenario",
    "only",
    multiple=True,
    help="Run only these scenarios (numbers as in the table, e.g. 7 or B3).",
)
@click.option(
    "--cycles",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Collection cycles an attack gets to be found (a benign look-alike runs two).",
)
@click.option(
    "--burners",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Processes that each keep a core busy while the scenarios run (detection on a "
    "busy machine).",
)
@click.option(
    "--home-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Server home to use (default: a fresh temporary one, removed afterwards).",
)
@click.option(
    "--stock",
    is_flag=True,
    help="Run the agent as a stock osqueryd: osquery's own tables only, as osquery "
    "reports them (no process_stdio, no unix_socket_peers).",
)
@client_options
@output_options
def validate(
    client: AdminClient,
    only: tuple[str, ...],
    cycles: int,
    burners: int,
    home_dir: Path | None,
    stock: bool,
    fmt: str,
) -> None:
    """Run the IPC-abuse scenarios and benign look-alikes; exit 1 on a miss or a false
    positive.

    Starts a server and an agent for this host on loopback, learns this host's current
    execution paths as its baseline, then runs each scenario with real processes
    (socat, ncat, nc, bash, python3, tmux, make, run-parts), runs collection cycles until
    a medium-or-worse finding names one of its processes, and cleans up by recorded pid
    and path. A
    scenario whose tool is missing is reported as skipped, never as passed. With
    --stock the agent is a stock osqueryd, without this project's extension tables.

    The outcomes are then recorded in the fleet the other client commands talk to
    (its server, or its store), for this host as it enrolls (uuid and host
    identifier), where `fleetctl coverage` shows them; with no fleet configured the
    table is printed only.
    """
    console = Console(stderr=True)
    chosen = [s for s in SCENARIOS if not only or s.number in only]
    if not chosen:
        raise click.BadParameter("no scenario matches", param_hint="--scenario")
    with tempfile.TemporaryDirectory(prefix="fleetctl-validate-home-") as tmp:
        home = home_dir or Path(tmp)
        fleet = LocalFleet(
            Settings(home=home, listen=f"127.0.0.1:{free_port()}"), engine="embedded", stock=stock
        )
        try:
            with console.status("starting the server and agent, learning this host"):
                fleet.start()
                fleet.learn()
            busy = f" beside {burners} CPU burners" if burners else ""
            started = int(time.time())
            with console.status(f"running scenarios{busy}"), cpu_burners(burners):
                outcomes = run_scenarios(chosen, fleet, cycles=cycles)
            identity = enrolled_as(fleet)
        except FleetError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            fleet.stop()
    render(
        [o.row() for o in outcomes],
        ("scenario", "name", "kind", "result", "finding", "cycles", "seconds", "detail"),
        fmt,
        title="detection validation" + (" (stock osquery)" if stock else ""),
    )
    record(client, identity, outcomes, started, "stock" if stock else "extension")
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise click.ClickException(
            f"{len(failed)} scenario(s) failed: "
            + ", ".join(f"{o.scenario.number} {o.verdict}" for o in failed)
        )


def enrolled_as(fleet: LocalFleet) -> dict[str, str]:
    """This host as its agent enrolled: uuid, host identifier and hostname, the names
    the fleet knows it by."""
    assert fleet.client is not None
    host = fleet.client.get("/hosts")["hosts"][0]
    return {k: host[k] for k in ("uuid", "host_identifier", "hostname")}


def record(
    client: AdminClient,
    identity: dict[str, str],
    outcomes: list[Outcome],
    ran_at: int,
    agent: str,
) -> None:
    """Store the outcomes in the admin's fleet; say where, or why not, on stderr."""
    runs: list[dict[str, Any]] = [
        {
            "scenario": o.scenario.number,
            "name": o.scenario.name,
            "kind": "attack" if o.scenario.attack else "benign",
            "result": o.verdict,
            "seconds": None if o.seconds is None else round(o.seconds, 1),
            "agent": agent,
            "finding": o.finding,
            "detail": o.detail[:4096],
            "ran_at": ran_at,
        }
        for o in outcomes
    ]
    try:
        answer = client.post("/validations", {"host": identity, "runs": runs})
    except ClientError as exc:
        click.echo(f"(outcomes not recorded in a fleet: {exc.format_message()})", err=True)
        return
    click.echo(
        f"(recorded {answer['stored']} outcomes for {identity['host_identifier']} "
        f"(uuid {identity['uuid']}); `fleetctl coverage` shows them)",
        err=True,
    )
