"""Run scenarios against a live detection pipeline and judge the outcome.

For each scenario: start it, collect with the agent until a medium-or-worse finding has
an occurrence first seen after the scenario started whose pid is one of the scenario's
processes (an attack) or the wait runs out, then clean up by recorded pid and path. An
attack with such an occurrence is *detected*, one without is *missed*; a benign scenario
with one is a *false positive*. Occurrences, not findings: the same kind of attack may
have run (and been found) before, and the scenario's processes are new incidents on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "detail": self.detail,
        }


Findings = Callable[[int], list[dict[str, Any]]]


def run_scenarios(
    scenarios: list[Scenario],
    collect: Callable[[], None],
    findings: Findings,
    *,
    wait: float = 20.0,
    quiet_wait: float = 4.0,
) -> list[Outcome]:
    """``collect`` runs one agent cycle; ``findings(t)`` lists medium+ open findings with
    an occurrence first seen at unix time ``t`` or later, each with those occurrences
    (``occurrences_since``, as ``GET /findings?occurred_since=t`` answers)."""
    outcomes = []
    for scenario in scenarios:
        reason = scenario.unavailable()
        if reason:
            outcomes.append(Outcome(scenario, "skipped", detail=reason))
            continue
        outcomes.append(_run_one(scenario, collect, findings, wait, quiet_wait))
    return outcomes


def _hit(found: list[dict[str, Any]], pids: set[int]) -> tuple[dict[str, Any], Any] | None:
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


def _run_one(
    scenario: Scenario,
    collect: Callable[[], None],
    findings: Findings,
    wait: float,
    quiet_wait: float,
) -> Outcome:
    since = int(time.time())  # the server stamps occurrences with its (this) clock
    started = time.monotonic()
    try:
        running = scenario.launch()
    except Exception as exc:  # a scenario that cannot start is reported, not hidden
        return Outcome(scenario, "error", detail=f"could not start: {exc}")
    try:
        deadline = started + (wait if scenario.attack else quiet_wait)
        while True:
            pids = running.pids()
            collect()
            time.sleep(0.5)  # detection settles after the batch
            hit = _hit(findings(since), pids)
            if hit is not None:
                finding, occurrence = hit
                seconds = time.monotonic() - started
                verdict = "detected" if scenario.attack else "false positive"
                return Outcome(
                    scenario,
                    verdict,
                    str(finding["id"]),
                    seconds,
                    f"{finding['parent']} -> {finding['child']} pid {occurrence['pid']} "
                    f"({occurrence['severity']})",
                    int(occurrence["pid"]),
                )
            if time.monotonic() > deadline:
                return Outcome(scenario, "missed" if scenario.attack else "quiet")
    finally:
        running.cleanup()
