"""osqueryd's scheduler: splayed intervals and the one-second tick.

``osquery/dispatcher/scheduler.cpp`` ``SchedulerRunner::start``: a counter ``i`` starts
at the unix time and a query runs when ``i - previous >= splayed`` or ``i % splayed``
wrapped since the previous tick, so runs land on multiples of the splayed interval
and a slow tick catches up instead of skipping. ``splayValue``: a uniform random
interval within ±``--schedule_splay_percent`` (at least 1 s; percents <= 1 are taken as
10, so splay cannot be turned off), kept per query name while its interval is unchanged
(``interval.<name>`` in the state file, as osqueryd keeps it in RocksDB).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

from fleetctl.agent.config import ScheduledQuery
from fleetctl.agent.state import StateDB

DEFAULT_SPLAY_PERCENT = 10


def splay_value(original: int, percent: int, rng: random.Random | None = None) -> int:
    if percent <= 1:
        percent = DEFAULT_SPLAY_PERCENT
    if percent > 100:
        return original
    difference = int(original * percent / 100)
    high, low = original + difference, max(1, original - difference)
    if high == low:
        return high
    return (rng or random).randint(low, high)


def splayed_interval(state: StateDB, name: str, interval: int, percent: int) -> int:
    """The splayed interval of ``name``, reused while its configured interval is unchanged."""
    key = f"interval.{name}"
    stored = state.get(key)
    if stored:
        original, _, splayed = stored.partition(":")
        if original == str(interval) and splayed.isdigit():
            return int(splayed)
    value = splay_value(interval, percent)
    state.put(key, f"{interval}:{value}")
    return value


def is_due(i: int, previous: int, interval: int) -> bool:
    """osqueryd's test: a multiple of ``interval`` lies in (previous, i]."""
    return interval > 0 and (i - previous >= interval or i % interval <= previous % interval)


def startup_order(queries: Sequence[ScheduledQuery]) -> list[ScheduledQuery]:
    """Queries with ``startup_priority`` run once at start, lowest priority first."""
    chosen = [q for q in queries if q.startup_priority is not None]
    return sorted(chosen, key=lambda q: q.startup_priority or 0)


class Scheduler:
    """The tick loop; what runs and how is supplied by the agent."""

    def __init__(
        self,
        due: Callable[[], Sequence[tuple[ScheduledQuery, int]]],
        launch: Callable[[ScheduledQuery], None],
        on_tick: Callable[[int, int], None] = lambda i, previous: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._due = due
        self._launch = launch
        self._on_tick = on_tick
        self._clock = clock

    def run(self, stop: threading.Event) -> None:
        for query in startup_order([q for q, _ in self._due()]):
            if stop.is_set():
                return
            self._launch(query)
        i = int(self._clock())
        previous = i - 1
        while not stop.is_set():
            for query, splayed in self._due():
                if stop.is_set():
                    return
                if is_due(i, previous, splayed):
                    self._launch(query)
            self._on_tick(i, previous)
            previous = i
            current = int(self._clock())
            if i == current:
                i += 1
                # Sleep to the start of the next second (osqueryd pauses 1 s per tick).
                if stop.wait(max(0.0, i - self._clock())):
                    return
            else:
                i = current  # falling behind: do not sleep
