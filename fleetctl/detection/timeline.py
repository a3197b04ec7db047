"""A query's stored rows cut into the changes a replay applies at each of its times.

A replay judges a host at each time its collected state changed (``t_1 < ... < t_n``),
then as it is now. Given the rows of one query with their lifetimes (``first_seen`` to
``removed_at``), ``Timeline.of`` works out the rows present at ``t_1`` and, for every
later step, the rows that became present and those that stopped being present since the
step before: exactly the difference between "present at the step before" and "present
at this step" (``storage.results.present_at``). The last step is "now": the rows still
open, whatever their times.

A row that came and went between two steps is in no step: no judgement saw it, as none
of the per-time as-of reads would have.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fleetctl.detection.incremental import ChangedRow


class LivedRow(ChangedRow, Protocol):
    """A stored row with its lifetime (``storage.history.HistoryRow``): a changed row
    that also says when it went away."""

    @property
    def removed_at(self) -> int | None: ...


@dataclass
class Step:
    """What changed of one query's rows from the step before to this one."""

    opened: list[LivedRow] = field(default_factory=list)
    closed: list[LivedRow] = field(default_factory=list)


@dataclass
class Timeline:
    """One query's rows as steps: ``steps[0].opened`` is the state at the first time,
    ``steps[i]`` the change to ``times[i]``, and the last step the change to "now"."""

    steps: list[Step]

    @classmethod
    def of(cls, rows: Iterable[LivedRow], times: Sequence[int]) -> Timeline:
        """Steps for ``times`` (ascending) and then now: ``len(times) + 1`` of them."""
        steps = [Step() for _ in range(len(times) + 1)]
        for row in rows:
            shown = _first_step(row, times)
            if shown is None:
                continue
            steps[shown].opened.append(row)
            gone = _gone_step(row, times, shown)
            if gone is not None:
                steps[gone].closed.append(row)
        return cls(steps)


def _present(row: LivedRow, at: int) -> bool:
    """As ``storage.results.present_at``: added by ``at`` (or a tombstone), not removed."""
    return (row.first_seen is None or row.first_seen <= at) and (
        row.removed_at is None or row.removed_at > at
    )


def _first_step(row: LivedRow, times: Sequence[int]) -> int | None:
    """The first step at which the row is present (the last one: still open), if any."""
    start = 0 if row.first_seen is None else bisect.bisect_left(times, row.first_seen)
    if start < len(times) and _present(row, times[start]):
        return start
    if start < len(times):
        return None  # removed before the first time it could have been seen
    return len(times) if row.removed_at is None else None


def _gone_step(row: LivedRow, times: Sequence[int], shown: int) -> int | None:
    """The first step after ``shown`` at which the row is no longer present (None: it
    stays to the end). A row removed after the last time is gone "now"."""
    if row.removed_at is None:
        return None
    after = bisect.bisect_left(times, row.removed_at, lo=shown + 1)
    return min(after, len(times))


__all__ = ["LivedRow", "Step", "Timeline"]
