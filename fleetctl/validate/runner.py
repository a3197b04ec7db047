"""Run scenarios against a live detection pipeline and judge the outcome.

For each scenario: start it, then run collection cycles (the agent collects every
scheduled query once and delivers, and detection judges the delivery) until a
medium-or-worse finding has an occurrence first seen after the scenario started whose
pid is one of the scenario's processes, or the cycles run out; then clean up by recorded
pid and path. An attack with such an occurrence is *detected*, one without is *missed*;
a benign scenario with one is a *false positive*. Occurrences, not findings: the same
kind of attack may have run (and been found) before, and the scenario's processes are
new incidents on it.

The wait is counted in collection cycles, not seconds, so a busy machine makes a run
slower, never a miss: a scenario a quiet machine finds in one cycle is found in one
cycle with both cores busy too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from fleetctl.detection.scoring import severity_rank
from fleetctl.validate.scenarios import Scenario

MEDIUM = "medium"


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    verdict: str  # detected | missed | quiet | false positive | skipped | error
    finding: str = ""
    seconds: float | None = None
    detail: str = ""
    pid: int | None = None  # the scenario's process the occurrence is
    cycles: int = 0  # collection cycles run

    @property
    def ok(self) -> bool:
        return self.verdict in ("detected", "quiet", "skipped")

    def row(self) -> dict[str, object]:
        return {
            "scenario": self.scenario.number,
            "name": self.scenario.name,
            "kind": "attack" if self.scenario.attack else "benign",
            "result": self.verdict,
            "finding": self.finding,
            "cycles": self.cycles,
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "detail": self.detail,
        }


class Pipeline(Protocol):
    """The detection pipeline a scenario runs against (``fleetctl.cli.local.LocalFleet``)."""

    def collect(self) -> None:
        """One collection cycle: every scheduled query once, delivered."""

    def judged(self) -> None:
        """Return once detection has judged everything delivered."""

    def findings(self, since: int) -> list[dict[str, Any]]:
        """Open medium+ findings with occurrences first seen at ``since`` or later
        (``occurrences_since``, as ``GET /findings?occurred_since=`` answers)."""
        ...


def run_scenarios(
    scenarios: list[Scenario],
    pipeline: Pipeline,
    *,
    cycles: int = 3,
    quiet_cycles: int = 2,
) -> list[Outcome]:
    """Each scenario for at most ``cycles`` collection cycles (an attack) or exactly
    ``quiet_cycles`` (a benign look-alike)."""
    outcomes = []
    for scenario in scenarios:
        reason = scenario.unavailable()
        if reason:
            outcomes.append(Outcome(scenario, "skipped", detail=reason))
            continue
        budget = cycles if scenario.attack else quiet_cycles
        outcomes.append(_run_one(scenario, pipeline, budget))
    return outcomes


def occurrence_of(found: list[dict[str, Any]], pids: set[int]) -> tuple[dict[str, Any], Any] | None:
    """The first medium-or-worse occurrence that is one of ``pids``, with its finding
    (``found`` holds only occurrences first seen since the scenario started)."""
    return next(
        (
            (finding, occurrence)
            for finding in found
            for occurrence in finding.get("occurrences_since", [])
            if int(occurrence["pid"]) in pids
            and severity_rank(occurrence["severity"]) >= severity_rank(MEDIUM)
        ),
        None,
    )


def _run_one(scenario: Scenario, pipeline: Pipeline, budget: int) -> Outcome:
    since = int(time.time())  # the server stamps occurrences with its (this) clock
    started = time.monotonic()
    try:
        running = scenario.launch()
    except Exception as exc:  # a scenario that cannot start is reported, not hidden
        return Outcome(scenario, "error", detail=f"could not start: {exc}")
    try:
        for cycle in range(1, budget + 1):
            pids = running.pids()
            pipeline.collect()
            pipeline.judged()
            hit = occurrence_of(pipeline.findings(since), pids)
            if hit is not None:
                finding, occurrence = hit
                return Outcome(
                    scenario,
                    "detected" if scenario.attack else "false positive",
                    str(finding["id"]),
                    time.monotonic() - started,
                    f"{finding['parent']} -> {finding['child']} pid {occurrence['pid']} "
                    f"({occurrence['severity']})",
                    int(occurrence["pid"]),
                    cycle,
                )
        waited = time.monotonic() - started
        if not scenario.attack:
            return Outcome(scenario, "quiet", seconds=waited, cycles=budget)
        detail = f"no finding on its processes after {budget} collection cycles ({waited:.1f} s)"
        gone = running.exited()
        return Outcome(
            scenario,
            "missed",
            seconds=waited,
            detail="; ".join([detail, *gone]),
            cycles=budget,
        )
    finally:
        running.cleanup()
