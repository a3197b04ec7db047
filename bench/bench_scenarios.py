"""Every detection scenario with both cores busy, beside the same on a quiet machine.

The pipeline runs as ``fleetctl validate`` runs it: server, shipped packs, the embedded
agent of this host, and detection that learned this host first. Each scenario then runs
``--rounds`` times with ``--burners`` CPU burners beside it (processes spinning on a
core each), and ``--quiet-rounds`` times without them: the baseline of the same run.

A round launches the scenario and runs collection cycles (three at most for an attack,
two for a benign look-alike). After each cycle's delivery it polls the admin API, without
any help from the server, until the scenario's occurrence shows or ``--window`` seconds
pass: the time from the end of the delivering cycle to the visible finding is the
delivery-to-finding latency. The goal is every attack found in every round, each within
2 s of the delivery that carried it (so within one collection interval plus 2 s of the
attack starting, on a real schedule); benign look-alikes quiet in every round.

    .venv/bin/python bench/bench_scenarios.py [--rounds 10] [--quiet-rounds 3]
        [--burners 2] [--scenario N ...] [--stock]

It judges every process on this machine, so it takes the lock the host-wide tests take.
Exit status 1 when a round misses an attack, flags a look-alike, or takes longer than the
goal.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from fleetctl.local import LocalFleet  # noqa: E402
from fleetctl.settings import Settings  # noqa: E402
from fleetctl.validate import SCENARIOS, Scenario, cpu_burners  # noqa: E402
from fleetctl.validate.runner import occurrence_of  # noqa: E402
from fleetctl.validate.scenarios import free_port  # noqa: E402

LOCK = Path(tempfile.gettempdir()) / "fleetctl-host-wide-tests.lock"
GOAL = 2.0  # seconds from delivery to a visible finding


@dataclass
class Rounds:
    """What the rounds of one scenario under one condition gave."""

    ok: int = 0
    runs: int = 0
    cycles: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def cell(self) -> str:
        return f"{self.ok}/{self.runs}"

    def worst(self) -> float | None:
        return max(self.latencies, default=None)


def one_round(fleet: LocalFleet, scenario: Scenario, window: float) -> tuple[bool, int, float]:
    """(found, cycles, latency) of one run of an attack; (quiet, cycles, 0) of a look-alike."""
    since = int(time.time())
    try:
        running = scenario.launch()
    except Exception as exc:  # a scenario that cannot start is a failed round, said
        print(f"{scenario.number}: could not start: {exc}", file=sys.stderr)
        return False, 0, 0.0
    try:
        budget = 3 if scenario.attack else 2
        for cycle in range(1, budget + 1):
            pids = running.pids()
            fleet.collect()
            delivered = time.monotonic()
            while time.monotonic() - delivered < window:
                if occurrence_of(fleet.findings(since), pids) is not None:
                    return scenario.attack, cycle, time.monotonic() - delivered
                time.sleep(0.05)
        return not scenario.attack, budget, 0.0
    finally:
        running.cleanup()


def run_rounds(
    fleet: LocalFleet, scenario: Scenario, rounds: int, window: float, result: Rounds
) -> None:
    for _ in range(rounds):
        ok, cycles, latency = one_round(fleet, scenario, window)
        result.runs += 1
        result.ok += ok
        result.cycles.append(cycles)
        if scenario.attack and ok:
            result.latencies.append(latency)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quiet-rounds", type=int, default=3)
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--window", type=float, default=10.0, help="seconds polled per cycle")
    parser.add_argument("--scenario", action="append", default=[])
    parser.add_argument("--stock", action="store_true", help="the agent as a stock osqueryd")
    args = parser.parse_args(argv)
    wanted = [s for s in SCENARIOS if not args.scenario or s.number in args.scenario]
    chosen = [s for s in wanted if not s.unavailable()]
    console = Console(width=150)
    for scenario in wanted:
        if scenario.unavailable():
            console.print(f"{scenario.number} {scenario.name}: not run, {scenario.unavailable()}")
    quiet = {s.number: Rounds() for s in chosen}
    busy = {s.number: Rounds() for s in chosen}
    with LOCK.open("a") as lock, tempfile.TemporaryDirectory(prefix="fleetctl-bench-") as tmp:
        fcntl.flock(lock, fcntl.LOCK_EX)
        fleet = LocalFleet(
            Settings(home=Path(tmp), listen=f"127.0.0.1:{free_port()}"),
            engine="embedded",
            stock=args.stock,
        )
        fleet.start()
        try:
            fleet.learn()
            for scenario in chosen:
                run_rounds(fleet, scenario, args.quiet_rounds, args.window, quiet[scenario.number])
                with cpu_burners(args.burners):
                    run_rounds(fleet, scenario, args.rounds, args.window, busy[scenario.number])
                q, b = quiet[scenario.number], busy[scenario.number]
                console.print(
                    f"{scenario.number} {scenario.name}: quiet {q.cell()} (worst"
                    f" {_seconds(q.worst())} s), {args.burners} burners {b.cell()} (worst"
                    f" {_seconds(b.worst())} s, at most {max(b.cycles, default=0)} cycles)"
                )
        finally:
            fleet.stop()
    print_table(console, chosen, quiet, busy, args)
    worst = max((r.worst() or 0.0 for r in busy.values()), default=0.0)
    return 0 if all(r.ok == r.runs for r in busy.values()) and worst <= GOAL else 1


def print_table(
    console: Console,
    chosen: list[Scenario],
    quiet: dict[str, Rounds],
    busy: dict[str, Rounds],
    args: argparse.Namespace,
) -> None:
    mode = "stock osquery" if args.stock else "extension tables"
    table = Table(title=f"scenarios, {args.burners} CPU burners beside them ({mode})")
    for column in (
        "scenario",
        "kind",
        "quiet ok",
        "busy ok",
        "busy cycles (max)",
        "worst s quiet",
        "worst s busy",
    ):
        table.add_column(column)
    for scenario in chosen:
        q, b = quiet[scenario.number], busy[scenario.number]
        table.add_row(
            f"{scenario.number} {scenario.name}",
            "attack" if scenario.attack else "benign",
            q.cell(),
            b.cell(),
            str(max(b.cycles, default=0)),
            _seconds(q.worst()),
            _seconds(b.worst()),
        )
    console.print(table)
    worst_q = max((r.worst() or 0.0 for r in quiet.values()), default=0.0)
    worst_b = max((r.worst() or 0.0 for r in busy.values()), default=0.0)
    ratio = f" (ratio {worst_b / worst_q:.2f})" if worst_q else ""
    console.print(
        f"worst delivery-to-finding: {worst_b:.2f} s busy, {worst_q:.2f} s quiet{ratio};"
        f" goal {GOAL:.0f} s"
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
