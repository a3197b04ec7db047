"""Where a host stands with detection: learning until a time, judging, or on a baseline.

A new host only *learns* its execution paths for a learning window after it enrolled:
a path new on it becomes known instead of a finding (unless it looks like an attack on
its own, see ``scoring.Score.intrinsic``). An explicit baseline (``fleetctl detect
--learn``, or learned keys for the host in the baseline file) ends the window at once.
The window's length defaults to the server setting's (``fleetctl.settings``), so the
detector, the server and the CLI cannot disagree on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetctl.settings import DEFAULT_LEARNING_WINDOW

__all__ = [
    "BASELINE",
    "DEFAULT_LEARNING_WINDOW",
    "JUDGING",
    "LEARNING",
    "LearningState",
    "learning_state",
]

LEARNING, JUDGING, BASELINE = "learning", "judging", "baseline"


@dataclass(frozen=True)
class LearningState:
    """``state`` is ``learning`` (``until`` is when the window ends), ``judging`` (the
    window is over) or ``baseline`` (explicit; ``since`` when known)."""

    state: str
    until: float | None = None
    since: float | None = None

    @property
    def learning(self) -> bool:
        return self.state == LEARNING


def learning_state(
    first_seen: float,
    window: float,
    now: float,
    *,
    baselined: bool = False,
    baselined_at: float | None = None,
) -> LearningState:
    """The state of a host first seen (enrolled) at ``first_seen``."""
    if baselined or baselined_at is not None:
        return LearningState(BASELINE, since=baselined_at)
    until = first_seen + window
    if now < until:
        return LearningState(LEARNING, until=until)
    return LearningState(JUDGING)
