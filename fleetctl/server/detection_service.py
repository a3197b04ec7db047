"""Run detection as results arrive: a worker that re-judges a host after its IPC
telemetry changes.

Ingest marks a host when a result batch touches a query the detector reads (lineage,
stdio, pipes, sockets, named pipes, exec events); the worker waits a moment so the
queries of one collection cycle arrive together, then builds the host's current
snapshot from its open rows (event queries: only their recent rows), derives its
execution paths and judges them against the host's and the fleet's history. The cost of
a run is the host's current state, never the length of its history. Runs take turns (one
lock), so a run the admin asks for and the worker's never store one occurrence twice.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

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
    learning_state,
)
from fleetctl.detection._readers import PROCESS_QUERIES, READERS
from fleetctl.detection.records import same_start
from fleetctl.detection.state import FindingRecord, FleetKey, HostState, Sighting
from fleetctl.packs.loader import load_file, pack_files, shipped_packs_dir
from storage import detection as detection_store
from storage import findings as findings_store
from storage import results as result_store
from storage.engine import session_scope
from storage.runs import split_query_name

log = logging.getLogger("fleetctl.detection")

DETECTION_QUERIES = frozenset(PROCESS_QUERIES | set(READERS))
EVENT_WINDOW = 600  # seconds of exec events that count as "running now"
ACCEPTED = "accepted while learning"


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


def detection_state(history: detection_store.StoredHistory, host_id: int) -> DetectionState:
    """The detector's state for a run on ``host_id`` from what the store loaded for it."""
    names = history.names
    state = DetectionState()
    state.started_at = float(min(history.enrolled.values(), default=0))
    for hid, enrolled in history.enrolled.items():
        state.hosts[names[hid]] = HostState(first_seen=float(enrolled))
    state.fleet_baselined = bool(history.baselined)
    me = state.hosts[names[host_id]]
    me.baselined = host_id in history.baselined
    for key, (first, last) in history.keys.items():
        me.keys[key] = Sighting(float(first), float(last))
    for parent, child in history.pairs:
        me.parents.setdefault(parent, set()).add(child)
    for fid, key, first, last, severity, score in history.findings:
        state.findings[fid] = FindingRecord(
            fid, names[host_id], key, float(first), float(last), severity, score
        )
    for key, hid, first, last in history.fleet:
        entry = state.fleet.setdefault(key, FleetKey(float(first), float(last)))
        entry.first_seen = min(entry.first_seen, float(first))
        entry.last_seen = max(entry.last_seen, float(last))
        entry.hosts.add(names.get(hid, str(hid)))
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


def relevant(name: str, packs: Collection[str]) -> bool:
    return split_query_name(name, packs).query in DETECTION_QUERIES


@dataclass
class DetectionService:
    """Incremental detection, one host at a time, in a background thread."""

    sessions: sessionmaker[Session]
    learning_window: float = DEFAULT_LEARNING_WINDOW
    settle: float = 0.1
    on_findings: Callable[[int, list[str]], None] | None = None
    _dirty: dict[int, float] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _stop: bool = False
    _thread: threading.Thread | None = None
    _events: frozenset[str] = field(default_factory=_event_queries)
    _baseline: tuple[int | None, Baseline] | None = None
    _running: threading.Lock = field(default_factory=threading.Lock)
    # Marks counted as they come, and how many of them the worker has judged: a caller
    # that delivered results can wait until detection has caught up with them.
    _marked: int = 0
    _judged: int = 0

    def mark(self, host_id: int) -> None:
        with self._cond:
            self._dirty.setdefault(host_id, time.monotonic())
            self._marked += 1
            self._cond.notify_all()

    def wait_judged(self, timeout: float) -> bool:
        """Wait until every host marked before this call has been judged (False when
        ``timeout`` seconds pass first). Results are marked when their ``log`` post is
        stored, so after an agent's delivery this is "detection has seen it"."""
        with self._cond:
            target = self._marked
            return self._cond.wait_for(lambda: self._judged >= target, timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="detection", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                oldest = min(self._dirty.values())
                wait = self.settle - (time.monotonic() - oldest)
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                hosts, self._dirty = list(self._dirty), {}
                taken = self._marked
            for host_id in hosts:
                try:
                    created = self.run_host(host_id, int(time.time())).created
                except Exception:
                    log.exception("detection failed for host %s", host_id)
                    continue
                if created and self.on_findings is not None:
                    self.on_findings(host_id, created)
            with self._cond:
                self._judged = taken
                self._cond.notify_all()

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
        """The admin's baseline (YAML, may extend the default), re-read when it changes."""
        stored = detection_store.current_baseline(session)
        version = stored[0] if stored else None
        if self._baseline is None or self._baseline[0] != version:
            parsed = Baseline.loads(stored[1]) if stored else Baseline.default()
            self._baseline = (version, parsed)
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
        name = detection_store.detection_names(session)[host_id]
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
        with self._running, session_scope(self.sessions) as session:
            snap = self.snapshot(session, host_id, stamp)
            paths = build_paths(snap)
            keys = {p.path_key() for p in paths}
            parents = {p.parent.basename for p in paths if p.parent}
            loaded = detection_store.load_history(session, host_id, keys, parents)
            state = detection_state(loaded, host_id)
            detector = Detector(self.baseline(session), state, learning_window=self.learning_window)
            if not learn:
                findings = detector.detect(paths, float(stamp))
                save_state(session, host_id, snap.host, state, loaded)
                return HostRun(findings_store.save_findings(session, host_id, findings, same_start))
            learned = detector.learn(paths, float(stamp), accept=accept)
            detection_store.mark_baselined(session, host_id, now)
            save_state(session, host_id, snap.host, state, loaded)
            accepted = [key for _, key in learned.accepted]
            if accepted:
                self._accept(session, host_id, snap.host, accepted, actor, now)
            return HostRun(
                created=findings_store.save_findings(session, host_id, learned.refused, same_start),
                learned=[key for _, key in learned.keys],
                new_keys=[key for _, key in learned.new_keys],
                refused=list(learned.refused),
                accepted=accepted,
            )

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
