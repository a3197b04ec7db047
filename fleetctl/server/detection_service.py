"""Run detection as results arrive: a worker that judges what changed on a host.

Ingest marks a host when a result batch touches a query the detector reads (lineage,
stdio, pipes, sockets, named pipes, exec events), with the rows each run opened and
closed (``storage.results.AppliedRows``); the worker waits a moment so the queries of one
collection cycle arrive together, then moves the host's in-memory state forward
(``fleetctl.detection.incremental.HostDetection``: its rows, snapshot and paths) and
judges only the path keys whose paths changed, against the host's and the fleet's
history loaded for those keys. A key still present is judged again once an hour, so its
sighting and finding keep a current ``last_seen``.

A host is rebuilt from its stored open rows when its state is unknown (first batch after
start, or evicted: at most ``max_hosts`` are kept), on an epoch change or recorded data
loss (a rebaseline included), when the baseline file changed, and on demand
(``run_host``: ``fleetctl detect``). Runs on one host take turns (a lock per host), so a
run the admin asks for and the worker's never store one occurrence twice; a host's posts
take turns too (``ingest_turn``), so its changes reach the worker in the order they were
stored.

``judges`` threads judge different hosts at once, each taking the host marked longest
ago that no other judge holds: a slow judgement (a rebuild, a host with many changes)
holds up only its own host, and one judge's database round trips leave the process to
the others. A host marked again while it is judged waits for that judgement, then is
judged once for everything that arrived meanwhile.

With several server processes (``serve --workers``, replicas) each host has one judge:
the process holding the host's slot (``detection_slots``). Every stored batch that
touches a detection query also counts up the host's version in the store
(``storage.coordination``, in the batch's transaction); the judge records the version it
judged in its own transaction. The owner gets its own posts' row changes in memory with
their versions; a process that stores a batch of a host it does not judge keeps the
batch's row changes in the store under its version (``coordination.keep_changes``). The
owner finds such a version as a gap before its own next one, or in the store's marks,
read every second, and moves the host forward from the kept changes in version order;
it rebuilds the host from the store only when one is missing (data loss, a judge that
died, changes kept longer than ``CHANGES_KEPT``). Each worker writes its status to the
store every second, so any process answers ``detection/status`` for the fleet.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from fleetctl.detection import (
    DEFAULT_LEARNING_WINDOW,
    Baseline,
    DetectionState,
    Detector,
    Finding,
    HostSnapshot,
    LearningState,
    build_paths,
    consulted,
    learning_state,
)
from fleetctl.detection._readers import PROCESS_QUERIES, READERS
from fleetctl.detection.incremental import HostDetection
from fleetctl.detection.paths import ExecutionPath
from fleetctl.detection.records import same_start
from fleetctl.detection.state import FindingRecord, FleetKey, HostState, Sighting
from fleetctl.packs.loader import load_file, pack_files, shipped_packs_dir
from fleetctl.server.detection_slots import DetectionSlot
from fleetctl.settings import DETECTION_HOSTS
from storage import coordination
from storage import detection as detection_store
from storage import findings as findings_store
from storage import results as result_store
from storage.detection import LAST_SEEN_PRECISION
from storage.engine import session_scope
from storage.results import AppliedRows

log = logging.getLogger("fleetctl.detection")

DETECTION_QUERIES = frozenset(PROCESS_QUERIES | set(READERS))
EVENT_WINDOW = 600  # seconds of exec events that count as "running now"
ACCEPTED = "accepted while learning"
MAX_PENDING_ROWS = 100_000  # changed rows kept for one host before it is rebuilt instead
LAG_WINDOW = 2048  # judgements the lag and judge-time percentiles are taken over
COORDINATE_EVERY = 1.0  # seconds between reads of the store's marks (and status writes)
# A judge process (``serve --detection-processes``) learns of every batch from the
# store's marks, so it reads them more often; its status is still written every second.
JUDGE_PROCESS_POLL = 0.2
WORKER_SILENCE = 60  # seconds after which a worker's stored status is dropped
CHANGES_KEPT = 3600  # seconds a batch's kept changes wait for a judge (then: rebuilt)
FLEET_VIEW_TTL = 5.0  # seconds the fleet's hosts, as judgements count them, are reused
# Why a host was rebuilt from the store (``detection/status`` counts each): its state was
# not in memory (first batch, evicted, a failed run), ingest or the store's mark asked for
# it (data loss, an epoch change), the baseline file changed, a batch's kept changes were
# missing, too many changed rows waited, or the admin asked (``fleetctl detect``).
UNKNOWN, MARKED, BASELINE, CHANGES_MISSING, TOO_MANY_ROWS, ON_DEMAND = (
    "unknown",
    "marked",
    "baseline",
    "changes_missing",
    "too_many_rows",
    "on_demand",
)


@dataclass(frozen=True)
class Batch:
    """A stored batch's detection row changes, for the host's judge: in memory when this
    process stored it, or (``applied`` None) kept in the store under ``version`` by the
    process that did (``storage.coordination.keep_changes``)."""

    version: int | None
    applied: Sequence[AppliedRows] | None


@dataclass(frozen=True)
class DetectionStatus:
    """How far behind detection is: hosts waiting, the oldest wait, judgements done, and
    the mark-to-judged lag over the last ``LAG_WINDOW`` judgements (seconds), and why
    hosts were rebuilt (reason -> count), so an admin sees whether rebuilds are expected.
    ``judge_*``: how long one judgement took over the same window, beside the lag: a lag
    far above it is hosts waiting for a judge, not slow judgements."""

    pending_hosts: int
    oldest_pending: float
    hosts_judged: int
    full_rebuilds: int
    incremental: int
    hosts_in_memory: int
    rows_parsed: int
    paths_judged: int
    lag_samples: int
    lag_p50: float
    lag_p95: float
    lag_p99: float
    rebuilds: dict[str, int] = field(default_factory=dict)
    judges: int = 1
    judge_p50: float = 0.0
    judge_p99: float = 0.0
    judge_max: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pending_hosts": self.pending_hosts,
            "oldest_pending_seconds": round(self.oldest_pending, 3),
            "hosts_judged": self.hosts_judged,
            "full_rebuilds": self.full_rebuilds,
            "incremental_runs": self.incremental,
            "hosts_in_memory": self.hosts_in_memory,
            "rows_parsed": self.rows_parsed,
            "paths_judged": self.paths_judged,
            "lag_seconds": {
                "samples": self.lag_samples,
                "p50": round(self.lag_p50, 3),
                "p95": round(self.lag_p95, 3),
                "p99": round(self.lag_p99, 3),
            },
            "rebuilds": dict(sorted(self.rebuilds.items())),
            "judges": self.judges,
            "judge_seconds": {
                "p50": round(self.judge_p50, 3),
                "p99": round(self.judge_p99, 3),
                "max": round(self.judge_max, 3),
            },
        }


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values (0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[min(len(ordered), int(rank)) - 1]


@dataclass(frozen=True)
class HostRun:
    """What one run on a host did: new findings, and for an explicit learn the keys it
    learned, the paths it refused (each a finding) and those accepted by name."""

    created: list[str] = field(default_factory=list)
    learned: list[str] = field(default_factory=list)
    new_keys: list[str] = field(default_factory=list)
    refused: list[Finding] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)


def _event_queries() -> frozenset[str]:
    """Shipped queries that read an evented table: their rows are events, not state."""
    names = set()
    for path in pack_files([shipped_packs_dir()]):
        for pack in load_file(path):
            for query in pack.queries:
                if re.search(r"\b\w+_events\b", query.query):
                    names.add(query.name)
    return frozenset(names)


@dataclass(frozen=True)
class FleetView:
    """The fleet's directory as the detector's state holds it, built once per read: every
    host at its enrolment (shared by the runs that use this view; a run replaces its own
    host's entry and changes no other) and when the fleet started."""

    directory: detection_store.FleetDirectory
    hosts: dict[str, HostState]
    started_at: float
    read_at: float

    @classmethod
    def of(cls, directory: detection_store.FleetDirectory, read_at: float) -> FleetView:
        names, enrolled = directory.names, directory.enrolled
        return cls(
            directory=directory,
            hosts={names[hid]: HostState(first_seen=float(at)) for hid, at in enrolled.items()},
            started_at=float(min(enrolled.values(), default=0)),
            read_at=read_at,
        )


def detection_state(
    history: detection_store.StoredHistory, host_id: int, view: FleetView | None = None
) -> DetectionState:
    """The detector's state for a run on ``host_id`` from what the store loaded for it
    (and the fleet's ``view``, built from the history's directory when not given)."""
    view = view or FleetView.of(history.directory, 0.0)
    names = history.directory.names
    state = DetectionState()
    state.started_at = view.started_at
    state.hosts = dict(view.hosts)
    state.fleet_baselined = bool(history.directory.baselined) or history.baselined
    me = state.hosts[names[host_id]] = HostState(
        first_seen=float(history.directory.enrolled[host_id]), baselined=history.baselined
    )
    for key, (first, last) in history.keys.items():
        me.keys[key] = Sighting(float(first), float(last))
    for parent, child in history.pairs:
        me.parents.setdefault(parent, set()).add(child)
    for fid, key, first, last, severity, score in history.findings:
        state.findings[fid] = FindingRecord(
            fid, names[host_id], key, float(first), float(last), severity, score
        )
    for key, first, last, hosts in history.fleet:
        state.fleet[key] = FleetKey(float(first), float(last), others=hosts)
    for key, seen in me.keys.items():  # the host's own keys are on the fleet too
        entry = state.fleet.setdefault(key, FleetKey(seen.first_seen, seen.last_seen))
        entry.hosts.add(names[host_id])
    for parent, child in history.parents:
        state.parents.setdefault(parent, set()).add(child)
    return state


def save_state(
    session: Session,
    host_id: int,
    host_name: str,
    state: DetectionState,
    loaded: detection_store.StoredHistory,
) -> int:
    """Store what the run changed of the host's part of ``state`` (``host_name`` is the
    host's name in it)."""
    me = state.hosts[host_name]
    keys = {key: (seen.first_seen, seen.last_seen) for key, seen in me.keys.items()}
    return detection_store.save_history(session, host_id, keys, me.parents, loaded)


@dataclass
class DetectionService:
    """Incremental detection in background threads (``judges``), one judge per host at
    a time."""

    sessions: sessionmaker[Session]
    learning_window: float = DEFAULT_LEARNING_WINDOW
    settle: float = 0.1
    judges: int = 1
    on_findings: Callable[[int, list[str]], None] | None = None
    _dirty: dict[int, float] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stop: bool = False
    _threads: list[threading.Thread] = field(default_factory=list)
    _events: frozenset[str] = field(default_factory=_event_queries)
    _baseline: tuple[int | None, Baseline] | None = None
    _fleet: FleetView | None = None
    _host_turns: dict[int, threading.Lock] = field(default_factory=dict)
    _memory: threading.Lock = field(default_factory=threading.Lock)  # guards ``_hosts``
    # Marks are numbered as they come; each host waiting or being judged keeps the number
    # of its earliest mark not yet judged, so a caller that delivered results can wait
    # until detection has caught up with them.
    _marked: int = 0
    _first_mark: dict[int, int] = field(default_factory=dict)
    _judging: dict[int, int] = field(default_factory=dict)  # host id -> its first mark
    max_hosts: int = DETECTION_HOSTS  # serve's --detection-hosts (about 2.8 MB a host)
    refresh: float = LAST_SEEN_PRECISION
    # Row changes waiting per host (in the order they were stored), hosts to rebuild,
    # and the hosts whose state is known, with the baseline version they were judged by.
    _changes: dict[int, list[Batch]] = field(default_factory=dict)
    _pending_rows: dict[int, int] = field(default_factory=dict)
    _rebuild: dict[int, str] = field(default_factory=dict)  # host id -> why
    _hosts: OrderedDict[int, tuple[HostDetection, int | None]] = field(default_factory=OrderedDict)
    _turns: weakref.WeakValueDictionary[int, asyncio.Lock] = field(
        default_factory=weakref.WeakValueDictionary
    )
    _lags: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_WINDOW))
    _durations: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_WINDOW))
    _counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("judged", "full", "incremental", "rows", "paths"), 0)
    )
    #: The hosts this process judges (None: every host marked here, and no store marks
    #: read: a service run on its own), and the name its status is stored under.
    slot: DetectionSlot | None = None
    worker_name: str = ""
    # host id -> the store version its in-memory state and queued changes reach; hosts
    # whose post is being stored here now (their mark comes with its changes).
    _versions: dict[int, int] = field(default_factory=dict)
    _inflight: dict[int, int] = field(default_factory=dict)
    coordinate_every: float = COORDINATE_EVERY
    _coordinated: float = 0.0
    _status_saved: float = 0.0
    _pruned: int = 0
    _rebuilds: dict[str, int] = field(default_factory=dict)  # why -> how many

    def owns(self, host_id: int) -> bool:
        """Whether this process judges ``host_id`` (its posts are marked here)."""
        return self.slot is None or self.slot.owns(host_id)

    def storing(self, host_id: int, started: bool) -> None:
        """A ``log`` post of the host is being stored here (``started``) or was stored
        and marked: meanwhile the store's marks leave the host to it."""
        with self._cond:
            count = self._inflight.get(host_id, 0) + (1 if started else -1)
            if count > 0:
                self._inflight[host_id] = count
            else:
                self._inflight.pop(host_id, None)

    def ingest_turn(self, host_id: int) -> asyncio.Lock:
        """The lock a host's ``log`` post holds from storing to marking, so the worker
        gets the host's row changes in the order the store applied them."""
        lock = self._turns.get(host_id)
        if lock is None:
            lock = self._turns[host_id] = asyncio.Lock()
        return lock

    def mark(
        self,
        host_id: int,
        applied: Sequence[AppliedRows] = (),
        *,
        rebuild: bool = False,
        version: int | None = None,
    ) -> None:
        """Queue ``host_id`` for judgement with the row changes of a stored batch;
        ``rebuild`` (data loss, an epoch change) rebuilds the host from the store instead.
        A query's first ``counter = 0`` baseline is a change like any other: the store
        gives what it really opened and closed, and with differential packs a new host
        sends one per query, each of which would otherwise rebuild the whole host.
        ``version``: the host's store version the batch made; the versions between the
        one known here and it were stored by another process, which kept their changes
        in the store: they are read from there first. A host whose version is not
        known here is rebuilt."""
        with self._cond:
            between: range = range(0)
            if rebuild:
                self._rebuild.setdefault(host_id, MARKED)
            if version is not None:
                known = self._versions.get(host_id)
                if known is None:
                    self._rebuild.setdefault(host_id, UNKNOWN)
                between = range((known or 0) + 1, version)
                self._versions[host_id] = version
            self._dirty.setdefault(host_id, time.monotonic())
            if host_id in self._rebuild:
                self._changes.pop(host_id, None)
                self._pending_rows.pop(host_id, None)
            else:
                rows = self._pending_rows.get(host_id, 0)
                rows += sum(len(a.opened) + len(a.closed) for a in applied)
                if rows > MAX_PENDING_ROWS:
                    self._rebuild[host_id] = TOO_MANY_ROWS
                    self._changes.pop(host_id, None)
                    self._pending_rows.pop(host_id, None)
                else:
                    queued = self._changes.setdefault(host_id, [])
                    queued += [Batch(v, None) for v in between]
                    queued.append(Batch(version, applied))
                    self._pending_rows[host_id] = rows
            self._marked += 1
            self._first_mark.setdefault(host_id, self._marked)
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        """Whether the judges run (a client over the store has none)."""
        return any(thread.is_alive() for thread in self._threads)

    def status(self) -> DetectionStatus:
        with self._cond:
            now = time.monotonic()
            oldest = now - min(self._dirty.values()) if self._dirty else 0.0
            lags = sorted(self._lags)
            durations = sorted(self._durations)
            counts = dict(self._counts)
            rebuilds = dict(self._rebuilds)
            pending = len(self._dirty)
        return DetectionStatus(
            pending_hosts=pending,
            oldest_pending=oldest,
            hosts_judged=counts["judged"],
            full_rebuilds=counts["full"],
            incremental=counts["incremental"],
            hosts_in_memory=len(self._hosts),
            rows_parsed=counts["rows"],
            paths_judged=counts["paths"],
            lag_samples=len(lags),
            lag_p50=percentile(lags, 0.5),
            lag_p95=percentile(lags, 0.95),
            lag_p99=percentile(lags, 0.99),
            rebuilds=rebuilds,
            judges=self.judges,
            judge_p50=percentile(durations, 0.5),
            judge_p99=percentile(durations, 0.99),
            judge_max=durations[-1] if durations else 0.0,
        )

    def wait_judged(self, timeout: float) -> bool:
        """Wait until every host marked before this call has been judged (False when
        ``timeout`` seconds pass first). Results are marked when their ``log`` post is
        stored, so after an agent's delivery this is "detection has seen it"."""
        with self._cond:
            target = self._marked

            def caught_up() -> bool:
                waiting = [*self._first_mark.values(), *self._judging.values()]
                return min(waiting, default=target + 1) > target

            return self._cond.wait_for(caught_up, timeout)

    @property
    def judged_elsewhere(self) -> bool:
        """Whether judge processes judge every host this process stores batches of
        (``serve --detection-processes``): it judges none itself."""
        return self.slot is not None and self.slot.index is None

    def start(self) -> None:
        """Start the judges (none where ``judged_elsewhere``)."""
        if self.judged_elsewhere:
            return
        self._threads = [
            threading.Thread(
                target=self._judge_loop, args=(index == 0,), name=f"detection-{index}", daemon=True
            )
            for index in range(max(1, self.judges))
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        if self.slot is not None:
            self.slot.release()

    def _judge_loop(self, coordinates: bool) -> None:
        """One judge: take the host marked longest ago that no judge holds (once it has
        settled), judge it, repeat. The first judge also keeps the slot and reads the
        store's marks (``_coordinate``)."""
        while True:
            if coordinates:
                self._coordinate()
            with self._cond:
                if self._stop:
                    return
                taken, wait = self._take()
                if taken is None:
                    if coordinates and self.slot is not None:
                        every = self.coordinate_every
                        wait = every if wait is None else min(wait, every)
                    self._cond.wait(wait)
                    continue
                host_id, marked_at, batches, rebuild, version = taken
            started = time.monotonic()
            created: list[str] = []
            try:
                created = self.judge_changes(
                    host_id, batches, rebuild, int(time.time()), reaches=version
                )
            except Exception:
                log.exception("detection failed for host %s", host_id)
            finally:
                with self._cond:
                    del self._judging[host_id]
                    now = time.monotonic()
                    self._lags.append(now - marked_at)
                    self._durations.append(now - started)
                    self._cond.notify_all()
            if created and self.on_findings is not None:
                self.on_findings(host_id, created)

    def _take(
        self,
    ) -> tuple[tuple[int, float, list[Batch], bool | str, int | None] | None, float | None]:
        """The next host to judge with what it waits for (the caller holds ``_cond``),
        or None and how long to wait: until the oldest free host settles (None: until a
        mark or a judge finishing wakes us)."""
        now = time.monotonic()
        for host_id, marked_at in self._dirty.items():
            if host_id in self._judging:
                continue  # its judge takes it again when done
            wait = self.settle - (now - marked_at)
            if wait > 0:
                return None, wait
            del self._dirty[host_id]
            self._judging[host_id] = self._first_mark.pop(host_id, self._marked)
            self._pending_rows.pop(host_id, None)
            batches = self._changes.pop(host_id, [])
            rebuild = self._rebuild.pop(host_id, False)
            return (host_id, marked_at, batches, rebuild, self._versions.get(host_id)), None
        return None, None

    def _coordinate(self) -> None:
        """Every ``coordinate_every`` seconds, with a slot: keep (or take) the slot's
        lock and queue the hosts of the slot the store has pending that this process has
        not queued; every ``COORDINATE_EVERY`` seconds, store this worker's status."""
        if self.slot is None or time.monotonic() - self._coordinated < self.coordinate_every:
            return
        self._coordinated = time.monotonic()
        try:
            if self.slot.refresh() and self.slot.index is not None:
                with session_scope(self.sessions) as session:
                    marks = coordination.pending_marks(session, self.slot.count, self.slot.index)
                self._queue_stored(marks)
            if time.monotonic() - self._status_saved >= COORDINATE_EVERY:
                self._status_saved = time.monotonic()
                self._save_status()
        except Exception:
            log.exception("detection could not read or write the store's marks; retrying")

    def _queue_stored(self, marks: Sequence[coordination.Mark]) -> None:
        """Queue the hosts whose store version is ahead of what this process knows
        (stored by another process, or left by a judge that died): with the versions'
        changes kept in the store when this process knows the host, else to rebuild."""
        wall, mono = time.time(), time.monotonic()
        with self._cond:
            for mark in marks:
                host_id = mark.host_id
                known = self._versions.get(host_id)
                if host_id in self._inflight or (known or 0) >= mark.version:
                    continue
                self._versions[host_id] = mark.version
                self._dirty.setdefault(host_id, mono - max(0.0, wall - mark.marked_at))
                if known is None or mark.rebuild or host_id in self._rebuild:
                    self._rebuild.setdefault(host_id, UNKNOWN if known is None else MARKED)
                    self._changes.pop(host_id, None)
                    self._pending_rows.pop(host_id, None)
                else:
                    queued = self._changes.setdefault(host_id, [])
                    queued += [Batch(v, None) for v in range(known + 1, mark.version + 1)]
                self._marked += 1
                self._first_mark.setdefault(host_id, self._marked)
            self._cond.notify_all()

    def _save_status(self) -> None:
        now = int(time.time())
        status = {"running": self.running, **self.status().to_dict()}
        slot = self.slot.index if self.slot is not None and self.slot.held else None
        with session_scope(self.sessions) as session:
            coordination.save_worker_status(session, self.worker_name, slot, status, now)
            coordination.forget_workers(session, now - WORKER_SILENCE)
            if now - self._pruned >= CHANGES_KEPT // 60:
                self._pruned = now
                coordination.prune_changes(session, now - CHANGES_KEPT)

    def judge_changes(
        self,
        host_id: int,
        batches: Sequence[Batch],
        rebuild: bool | str,
        now: int,
        *,
        reaches: int | None = None,
    ) -> list[str]:
        """Move the host's state forward by ``batches`` (or rebuild it) and judge the
        keys whose paths changed; ids of the new findings. ``rebuild``: why the host is
        rebuilt (True: ingest or the store asked for it). ``reaches``: the host's store
        version this judgement reaches, recorded as judged in its transaction (and the
        changes kept for it up to there dropped)."""
        with self.turn(host_id):
            with session_scope(self.sessions) as session:
                coordination.lock_judge(session, host_id)
                baseline = self.baseline(session)
                version = self._baseline[0] if self._baseline else None
                # Taken out while judged: if judging fails, the next batch rebuilds it.
                with self._memory:
                    known = self._hosts.pop(host_id, None)
                why = _why_rebuilt(known, rebuild, version)
                applied = None if why else self._in_order(session, host_id, batches)
                if known is None or applied is None:
                    self._count_rebuild(why or CHANGES_MISSING)
                    host = self._load(session, host_id)
                    update = host.full_rebuild(now)
                else:
                    host = known[0]
                    for run in applied:
                        host.change(run.name, run.query, run.opened, run.closed)
                    update = host.update(now)
                keys = set(update.keys) | host.stale_keys(now, self.refresh)
                paths = host.group(keys, now)
                unchanged = host.unchanged(paths, update)
                created = (
                    self.judge_paths(session, host_id, host.host, paths, now, unchanged, baseline)
                    if paths
                    else []
                )
                host.judged(keys, now)
                if reaches is not None:
                    coordination.set_judged(session, [(host_id, reaches)])
                    coordination.forget_changes(session, host_id, reaches)
            self._remember(host_id, host, version)  # once what it judged is committed
        with self._cond:
            self._counts["judged"] += 1
            self._counts["full" if update.full else "incremental"] += 1
            self._counts["rows"] += update.rows
            self._counts["paths"] += len(paths)
        return created

    def _count_rebuild(self, why: str) -> None:
        with self._cond:
            self._rebuilds[why] = self._rebuilds.get(why, 0) + 1

    @staticmethod
    def _in_order(
        session: Session, host_id: int, batches: Sequence[Batch]
    ) -> list[AppliedRows] | None:
        """The batches' row changes in store order, those another process stored read
        from what it kept; None when one of them was not kept (the host is rebuilt)."""
        stored = {b.version for b in batches if b.applied is None and b.version is not None}
        kept = coordination.kept_changes(session, host_id, stored)
        if len(kept) < len(stored):
            return None
        out: list[AppliedRows] = []
        for batch in batches:
            if batch.applied is not None:
                out += batch.applied
            elif batch.version is not None:
                out += kept[batch.version]
        return out

    def turn(self, host_id: int) -> threading.Lock:
        """The lock every run on the host holds (a judge's, the admin's, a replay's), so
        that no two of them store one occurrence twice."""
        with self._memory:
            return self._host_turns.setdefault(host_id, threading.Lock())

    def new_host(self, name: str) -> HostDetection:
        """An empty state for host ``name``, with the shipped event queries' window."""
        return HostDetection(name, events=self._events, window=EVENT_WINDOW)

    def kept(
        self, session: Session, host: HostDetection, at: int
    ) -> tuple[HostDetection, int | None]:
        """A host's current state, every key judged at ``at``, ready for ``keep``."""
        return self._keep(session, host, at)

    def keep(self, host_id: int, kept: tuple[HostDetection, int | None]) -> None:
        """Keep a host's state in memory, once what it judged is committed."""
        self._remember(host_id, *kept)

    def fleet_view(self, session: Session, host_id: int) -> FleetView:
        """The fleet's directory, read again at most every ``FLEET_VIEW_TTL`` seconds (at
        once when ``host_id`` is not in it): reading every host for each judgement made a
        judgement cost the fleet's size. The judged host's own explicit baseline is read
        with its history each time; another host's is up to that old."""
        view = self._fleet
        if (
            view is None
            or time.monotonic() - view.read_at > FLEET_VIEW_TTL
            or host_id not in view.directory.names
        ):
            view = FleetView.of(detection_store.fleet_directory(session), time.monotonic())
            self._fleet = view
        return view

    def _load(self, session: Session, host_id: int) -> HostDetection:
        """A host's state from its stored open rows (a full rebuild follows)."""
        name = self.fleet_view(session, host_id).directory.names[host_id]
        host = self.new_host(name)
        for state in result_store.query_names(session, host_id):
            if state.query in DETECTION_QUERIES:
                rows = result_store.open_rows(session, host_id, state.name)
                host.change(state.name, state.query, rows, ())
        return host

    def _remember(self, host_id: int, host: HostDetection, version: int | None) -> None:
        with self._memory:
            self._hosts[host_id] = (host, version)
            self._hosts.move_to_end(host_id)
            while len(self._hosts) > self.max_hosts:
                self._hosts.popitem(last=False)

    def judge_paths(
        self,
        session: Session,
        host_id: int,
        name: str,
        paths: list[ExecutionPath],
        now: int,
        unchanged: list[ExecutionPath] | None = None,
        baseline: Baseline | None = None,
    ) -> list[str]:
        """Judge ``paths`` of the host (``name``) as of ``now``; ``unchanged`` are those
        of them judged before under their key and not changed since (``Detector.detect``).
        ``baseline``: the admin's, as the caller read it for this judgement (read now
        when not given). Stores what changed; ids of new findings. The caller holds
        ``turn``."""
        keys, parents = consulted(paths)
        view = self.fleet_view(session, host_id)
        loaded = detection_store.load_history(session, host_id, keys, parents, view.directory)
        state = detection_state(loaded, host_id, view)
        rules = baseline or self.baseline(session)
        detector = Detector(rules, state, learning_window=self.learning_window)
        findings = detector.detect(paths, float(now), unchanged=unchanged or ())
        save_state(session, host_id, name, state, loaded)
        return findings_store.save_findings(session, host_id, findings, same_start)

    def learning_states(self, session: Session, now: float) -> dict[int, LearningState]:
        """host id -> learning until when, judging, or on an explicit baseline: as the
        detector decides it (learned keys for a host in the baseline file count as one)."""
        learned = self.baseline(session).learned.hosts
        return {
            hid: learning_state(
                float(enrolled),
                self.learning_window,
                now,
                baselined=name in learned,
                baselined_at=baselined_at,
            )
            for hid, name, enrolled, baselined_at in detection_store.learning_hosts(session)
        }

    def baseline(self, session: Session) -> Baseline:
        """The admin's baseline (YAML, may extend the default), its text read and parsed
        again only when its version moved."""
        version = detection_store.baseline_version(session)
        if self._baseline is None or self._baseline[0] != version:
            stored = detection_store.current_baseline(session)
            parsed = Baseline.loads(stored[1]) if stored else Baseline.default()
            self._baseline = (stored[0] if stored else None, parsed)
        return self._baseline[1]

    def snapshot(self, session: Session, host_id: int, at: int) -> HostSnapshot:
        """The host's detection-relevant rows as they were at ``at``, by the query name
        ingest stored for each logged name."""
        results: list[tuple[str, list[dict[str, str]]]] = []
        for state in result_store.query_names(session, host_id):
            if state.query not in DETECTION_QUERIES:
                continue
            since = at - EVENT_WINDOW if state.query in self._events else None
            rows = result_store.columns_at(session, host_id, state.name, at, since)
            results.append((state.query, rows))
        name = self.fleet_view(session, host_id).directory.names[host_id]
        return HostSnapshot.from_queries(name, results, observed_at=float(at))

    def run_host(
        self,
        host_id: int,
        now: int,
        *,
        at: int | None = None,
        learn: bool = False,
        accept: Collection[str] = (),
        actor: str = findings_store.DETECTION,
    ) -> HostRun:
        """Judge the host's paths as of ``at`` (default now).

        ``learn`` accepts the paths as the host's explicit baseline instead, except those
        it must refuse (they become findings); a refused key named in ``accept`` becomes
        a baseline entry for the host (by ``actor``), and its finding is suppressed.
        """
        stamp = now if at is None else at
        with self.turn(host_id):
            run, kept = self._run_host(host_id, now, stamp, at is None, learn, accept, actor)
            if kept is not None and self.owns(host_id):  # only the host's judge keeps it
                self._remember(host_id, *kept)  # once what it judged is committed
            return run

    def _run_host(
        self,
        host_id: int,
        now: int,
        stamp: int,
        current_state: bool,
        learn: bool,
        accept: Collection[str],
        actor: str,
    ) -> tuple[HostRun, tuple[HostDetection, int | None] | None]:
        with session_scope(self.sessions) as session:
            coordination.lock_judge(session, host_id)
            if current_state:  # on demand: rebuilt from the store, and kept
                self._count_rebuild(ON_DEMAND)
                with self._memory:
                    self._hosts.pop(host_id, None)
                current = self._load(session, host_id)
                current.full_rebuild(stamp)
                paths = current.group(current.by_key, stamp)
                name = current.host
            else:
                snap = self.snapshot(session, host_id, stamp)
                paths = build_paths(snap)
                name = snap.host
            kept = self._keep(session, current, stamp) if current_state else None
            if not learn:
                return HostRun(self.judge_paths(session, host_id, name, paths, stamp)), kept
            keys, parents = consulted(paths)
            loaded = detection_store.load_history(session, host_id, keys, parents)
            state = detection_state(loaded, host_id)
            detector = Detector(self.baseline(session), state, learning_window=self.learning_window)
            learned = detector.learn(paths, float(stamp), accept=accept)
            detection_store.mark_baselined(session, host_id, now)
            save_state(session, host_id, name, state, loaded)
            accepted = [key for _, key in learned.accepted]
            if accepted:
                self._accept(session, host_id, name, accepted, actor, now)
            run = HostRun(
                created=findings_store.save_findings(session, host_id, learned.refused, same_start),
                learned=[key for _, key in learned.keys],
                new_keys=[key for _, key in learned.new_keys],
                refused=list(learned.refused),
                accepted=accepted,
            )
            return run, kept

    def _keep(
        self, session: Session, host: HostDetection, at: int
    ) -> tuple[HostDetection, int | None]:
        """A host rebuilt on demand to keep, every key judged at ``at``."""
        host.judged(host.by_key, at)
        self.baseline(session)
        return host, self._baseline[0] if self._baseline else None

    def _accept(
        self, session: Session, host_id: int, name: str, keys: list[str], actor: str, now: int
    ) -> None:
        """Refused keys the admin named: baseline entries for the host, findings closed."""
        detection_store.add_learned_keys(
            session, [(name, key) for key in keys], f"{ACCEPTED} by {actor}", now, Baseline.loads
        )
        for key in keys:
            row = findings_store.finding_for(session, host_id, key)
            if row is not None:
                findings_store.suppress(session, row, actor, ACCEPTED, now)


def _why_rebuilt(
    known: tuple[HostDetection, int | None] | None, rebuild: bool | str, baseline: int | None
) -> str | None:
    """Why a judged host is rebuilt rather than moved forward (None: it is moved forward,
    if its batches' changes are all found)."""
    if known is None:
        return UNKNOWN
    if rebuild:
        return rebuild if isinstance(rebuild, str) else MARKED
    if known[1] != baseline:
        return BASELINE
    return None
