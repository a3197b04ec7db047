"""Replay a host's stored history through detection, at the cost of what changed.

``fleetctl detect --since T`` judges each host as it was at every time its collected
state changed since ``T`` (``storage.results.change_times``), then as it is now. Judging
each of those times from scratch (an as-of read of every query, a full parse, every path
judged) costs the whole host per time. Here the host's rows are read once per query
name with their lifetimes (``storage.history``), cut into the rows that opened and
closed at each time (``fleetctl.detection.timeline``), and one ``HostDetection`` is
built at the first time and moved forward by those changes, as the live worker moves it
by ingested batches. At each time only these path keys are judged:

* the keys whose paths changed at that time (``Update.keys``);
* the keys that change at the *next* time (or go away then): the last judgement of a
  key while it is present sets its finding's and occurrences' ``last_seen``, which a
  per-time judgement would have moved to that time;
* the keys whose stored sighting a per-time judgement would move now: the store moves a
  sighting's ``last_seen`` only once it is ``LAST_SEEN_PRECISION`` old, so the replay
  keeps the stored value per key and judges a key again when that much time has passed;
* and at the end, as the host is now, every key.

A key judged at none of the other times would have given the same answer there as at
its last judgement (its paths are the same; a known key is never new again), so the
stored findings, occurrences, sightings and parent history come out as those of a
judgement at every time (``tests/detection/test_replay.py`` checks it on generated
histories, on both databases).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy.orm import Session

from fleetctl.detection.incremental import HostDetection, Update
from fleetctl.detection.paths import ExecutionPath
from fleetctl.detection.timeline import Timeline
from fleetctl.server.detection_service import DETECTION_QUERIES, DetectionService
from storage import detection as detection_store
from storage import history as history_store
from storage import results as result_store
from storage.detection import LAST_SEEN_PRECISION
from storage.engine import session_scope

#: Called after each time of a host is judged, with the ids of the findings it created;
#: it may raise to stop the replay (the host's judgements are then rolled back).
OnTime = Callable[[list[str]], None]


def replay_times(session: Session, host_id: int, since: int, until: int) -> list[int]:
    """The times a replay judges the host at before "now": each time its collected state
    changed from ``since`` up to ``until``."""
    return [t for t in result_store.change_times(session, host_id, since) if t <= until]


#: Path key -> the paths (by pid, as built) it had when last judged.
_Judged = dict[str, dict[int, ExecutionPath]]


@dataclass
class _Judgement:
    """The keys to judge at one time, with the host's paths as they were then."""

    at: int
    keys: set[str]
    paths: dict[int, ExecutionPath]
    by_key: dict[str, frozenset[int]]

    @classmethod
    def of(cls, host: HostDetection, at: int, keys: Iterable[str]) -> _Judgement:
        by_key = {k: frozenset(pids) for k, pids in host.by_key.items()}
        return cls(at, set(keys), dict(host.paths), by_key)

    def group(self, last: _Judged) -> tuple[list[ExecutionPath], list[ExecutionPath]]:
        """The present paths of the keys, in pid order, observed at this time (what a
        judgement of every path at this time passes the detector for those keys), and
        those of them that are the paths their key had when last judged (``last``,
        which then remembers this judgement)."""
        owners = sorted((pid, key) for key in self.keys for pid in self.by_key.get(key, ()))
        paths, unchanged = [], []
        for pid, key in owners:
            built = self.paths[pid]
            path = built if built.observed_at == self.at else replace(built, observed_at=self.at)
            paths.append(path)
            if last.get(key, {}).get(pid) is built:
                unchanged.append(path)
        for key in self.keys:
            last[key] = {pid: self.paths[pid] for pid in self.by_key.get(key, ())}
        return paths, unchanged


@dataclass
class HostReplay:
    """One host's replay: the new findings, how many times it was judged at, and how
    many paths it judged over all of them."""

    created: list[str] = field(default_factory=list)
    times: int = 0
    paths_judged: int = 0


@dataclass
class _Sightings:
    """The stored ``last_seen`` of each of the host's path keys, as judgements move it."""

    last: dict[str, int]

    def stale(self, keys: Iterable[str], at: int) -> set[str]:
        """Keys whose sighting a judgement at ``at`` would move."""
        return {k for k in keys if k in self.last and at - self.last[k] >= LAST_SEEN_PRECISION}

    def judged(self, keys: Iterable[str], at: int) -> None:
        for key in keys:
            before = self.last.get(key)
            if before is None or at - before >= LAST_SEEN_PRECISION:
                self.last[key] = at


def replay_host(
    service: DetectionService,
    host_id: int,
    times: list[int],
    until: int,
    on_time: OnTime | None = None,
) -> HostReplay:
    """Judge the host at each of ``times`` (``replay_times``), then as it is now (stamped
    ``until``), and keep its current state in the service's memory."""
    with service.turn(host_id):
        with session_scope(service.sessions) as session:
            host, done = _replay(service, session, host_id, times, until, on_time)
            kept = service.kept(session, host, until)
        service.keep(host_id, kept)  # once what it judged is committed
    return done


def _replay(
    service: DetectionService,
    session: Session,
    host_id: int,
    times: list[int],
    until: int,
    on_time: OnTime | None,
) -> tuple[HostDetection, HostReplay]:
    name = detection_store.detection_names(session)[host_id]
    timelines = _timelines(session, host_id, times)
    stored = detection_store.host_keys(session, host_id)
    sightings = _Sightings({key: last for key, (_, last) in stored.items()})
    host = service.new_host(name)
    last: _Judged = {}
    done = HostReplay()
    stamps = [*times, until]
    waiting: _Judgement | None = None
    for step, at in enumerate(stamps):
        for stored_name, query, timeline in timelines:
            change = timeline.steps[step]
            host.change(stored_name, query, change.opened, change.closed)
        update = host.full_rebuild(at) if step == 0 else host.update(at)
        if waiting is not None:
            waiting.keys |= set(update.keys) & waiting.by_key.keys()
            _judge(service, session, host_id, name, waiting, sightings, last, done, on_time)
        final = step == len(stamps) - 1
        keys = host.by_key.keys() if final else _keys(update, sightings, host, at)
        waiting = _Judgement.of(host, at, keys)
    assert waiting is not None
    _judge(service, session, host_id, name, waiting, sightings, last, done, on_time)
    return host, done


def _keys(update: Update, sightings: _Sightings, host: HostDetection, at: int) -> set[str]:
    """The keys to judge at ``at`` for what changed then (and for stale sightings)."""
    return (set(update.keys) & host.by_key.keys()) | sightings.stale(host.by_key, at)


def _judge(
    service: DetectionService,
    session: Session,
    host_id: int,
    name: str,
    judgement: _Judgement,
    sightings: _Sightings,
    last: _Judged,
    done: HostReplay,
    on_time: OnTime | None,
) -> None:
    paths, unchanged = judgement.group(last)
    created = (
        service.judge_paths(session, host_id, name, paths, judgement.at, unchanged) if paths else []
    )
    sightings.judged(judgement.keys & judgement.by_key.keys(), judgement.at)
    done.created += created
    done.times += 1
    done.paths_judged += len(paths)
    if on_time is not None:
        on_time(created)


def _timelines(session: Session, host_id: int, times: list[int]) -> list[tuple[str, str, Timeline]]:
    """(stored name, query, its rows as steps) of each detection query of the host."""
    start = times[0] if times else None
    out = []
    for state in result_store.query_names(session, host_id):
        if state.query in DETECTION_QUERIES:
            rows = history_store.rows_alive_since(session, host_id, state.name, start)
            out.append((state.name, state.query, Timeline.of(rows, times)))
    return out
