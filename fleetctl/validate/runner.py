"""Run scenarios against a live detection pipeline and judge the outcome.

For each scenario: start it, collect with the agent until a medium-or-worse finding
names one of the scenario's processes (an attack) or the wait runs out, then clean up by
recorded pid and path. An attack with such a finding is *detected*, one without is
*missed*; a benign scenario with such a finding is a *false positive*.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fleetctl.validate.scenarios import Scenario

MEDIUM = "medium"


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    verdict: str  # detected | missed | quiet | false positive | skipped | error
    finding: str = ""
    seconds: float | None = None
    detail: str = ""

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


def run_scenarios(
    scenarios: list[Scenario],
    collect: Callable[[], None],
    findings: Callable[[], list[dict[str, object]]],
    *,
    wait: float = 20.0,
    quiet_wait: float = 4.0,
) -> list[Outcome]:
    """``collect`` runs one agent cycle; ``findings`` lists medium+ open findings."""
    outcomes = []
    for scenario in scenarios:
        reason = scenario.unavailable()
        if reason:
            outcomes.append(Outcome(scenario, "skipped", detail=reason))
            continue
        outcomes.append(_run_one(scenario, collect, findings, wait, quiet_wait))
    return outcomes


def _run_one(
    scenario: Scenario,
    collect: Callable[[], None],
    findings: Callable[[], list[dict[str, object]]],
    wait: float,
    quiet_wait: float,
) -> Outcome:
    before = {str(f["id"]): str(f["last_seen"]) for f in findings()}
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
            hit = next(
                (
                    f
                    for f in findings()
                    # new, or an earlier finding of the same path seen again now
                    if str(f["last_seen"]) > before.get(str(f["id"]), "")
                    and int(str(f["pid"])) in pids
                ),
                None,
            )
            if hit is not None:
                seconds = time.monotonic() - started
                verdict = "detected" if scenario.attack else "false positive"
                return Outcome(
                    scenario,
                    verdict,
                    str(hit["id"]),
                    seconds,
                    f"{hit['parent']} -> {hit['child']} ({hit['severity']})",
                )
            if time.monotonic() > deadline:
                return Outcome(scenario, "missed" if scenario.attack else "quiet")
    finally:
        running.cleanup()
