"""Long-lived server state: engines, caches and the check-in buffer.

One ``ServerState`` per process, built from ``Settings`` and passed to every handler
through ``request.app.state.fleet``: no module-level globals.

Under ``serve --workers N`` each worker process has its own (``WorkerRole`` says which
it is), so every cache here is one process's: the store is the source of truth they
share. What another process changes reaches this one within bounds: a re-issued or
revoked node key at the next read of the change events (every second,
``follow_events``), queued live queries within ``CampaignQueue.reload_every`` (3 s),
dynamic labels and packs within 10 s, and admin tokens (with their users' roles) and
enroll secrets at the next read of the change events after a revocation or a user's
change, at the latest within 10 s.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from fleetctl.server import carves
from fleetctl.server.analyst import AnalystSQL
from fleetctl.server.auth import FailureThrottle, NodeKeyCache
from fleetctl.server.campaign_queue import CampaignQueue
from fleetctl.server.detection_service import (
    COORDINATE_EVERY,
    JUDGE_PROCESS_POLL,
    DetectionService,
)
from fleetctl.server.detection_slots import DetectionSlot
from fleetctl.server.hunts import HuntService
from fleetctl.server.label_queue import LabelQueue
from fleetctl.server.node_service import PackIndex
from fleetctl.server.replay_jobs import ReplayJobs
from fleetctl.settings import Settings
from storage import campaigns as campaign_store
from storage import coordination, enroll_secrets, partitions
from storage import hosts as host_store
from storage import labels as label_store
from storage import users as user_store
from storage.engine import make_engine, make_sessionmaker, session_scope

T = TypeVar("T")

# Stalled carves are looked for this often (seconds): their timeout is counted in hours.
CARVE_EXPIRY_EVERY = 60.0
# The result history's day partitions (PostgreSQL) are made days ahead, so an hourly look
# is plenty; the first housekeeping round after start makes them.
PARTITION_UPKEEP_EVERY = 3600.0
# Change events are read back over this many seconds (a transaction may commit its event
# late, out of id order), and pruned from the store after twice as long.
EVENT_WINDOW = 60
EVENT_PRUNE_EVERY = 60.0


def default_judges(dialect: str, role: WorkerRole) -> int:
    """Judge threads of a process when ``--detection-judges`` is not given. One in a
    judge process: its threads share one interpreter, and a judgement waiting for the
    others' turns lags more than the database waits they overlap (``bench/fleet_sim.py``
    at 200 hosts on 2 cores: canary lag p99 2.8 s with one, 5.3-8.3 s with four; README,
    "Fleet simulator"); the processes are what runs judgements in parallel. Four in a worker
    that judges on PostgreSQL, so that judgements overlap its request handlers' and the
    database's waits. One on SQLite, where every judgement's write transaction waits
    for the one writer lock."""
    if dialect != "postgresql" or not role.serves_hosts:
        return 1
    return 4


def detection_service(
    settings: Settings, engine: Engine, sessions: sessionmaker[Session], role: WorkerRole
) -> DetectionService:
    """The detection of the process ``role`` names (not started)."""
    return DetectionService(
        sessions,
        learning_window=settings.learning_window,
        # The processes that judge split the hosts, and with them the memory bound.
        max_hosts=-(-settings.detection_hosts // role.slots),
        judges=settings.detection_judges or default_judges(engine.dialect.name, role),
        slot=DetectionSlot(engine, settings.home, role.slot, role.slots),
        worker_name=role.name(),
        # A judge process learns of every batch from the store's marks: read them often.
        coordinate_every=COORDINATE_EVERY if role.serves_hosts else JUDGE_PROCESS_POLL,
    )


@dataclass(frozen=True)
class WorkerRole:
    """Which of the server's processes this one is: process ``index`` of ``count``
    (``serve --workers`` and ``--detection-processes``), and the detection slot it
    judges: ``slot`` of ``slots``, or none (``slot`` None: it serves hosts and keeps
    each batch's changes in the store for the judge processes). ``serves_hosts`` False
    is a judge process: no listener, only detection."""

    index: int = 0
    count: int = 1
    slot: int | None = 0
    slots: int = 1
    serves_hosts: bool = True

    @classmethod
    def worker(cls, index: int, count: int, judge_processes: int = 0) -> WorkerRole:
        """Worker ``index`` of ``count`` serving hosts: it judges slot ``index`` of
        ``count`` unless ``judge_processes`` judge instead."""
        if judge_processes:
            return cls(index, count + judge_processes, None, judge_processes)
        return cls(index, count, index, count)

    @classmethod
    def judge(cls, index: int, workers: int, judge_processes: int) -> WorkerRole:
        """Judge process ``index`` (from 0) of ``judge_processes``, beside ``workers``."""
        count = workers + judge_processes
        return cls(workers + index, count, index, judge_processes, serves_hosts=False)

    def name(self) -> str:
        """Unique among every process on the store: the status of its detection worker
        is stored under it."""
        return f"{socket.gethostname()}:{os.getpid()}:{self.index}:{secrets.token_hex(3)}"


@dataclass
class LastSeen:
    """Last-seen times by id (hosts' check-ins, admin tokens' uses), buffered in memory
    and written in one batch every few seconds.

    An id's time is written again only once it has moved by ``precision`` seconds, so
    a fleet polling every few seconds costs one row update per host per ``precision``.
    """

    precision: int = 30
    _pending: dict[int, int] = field(default_factory=dict)
    _written: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, host_id: int, now: int) -> None:
        if now - self._written.get(host_id, 0) >= self.precision:
            self._pending[host_id] = now

    def take(self) -> dict[int, int]:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._written.update(pending)
        return pending


@dataclass
class ServerState:
    settings: Settings
    engine: Engine
    readonly_engine: Engine
    sessions: sessionmaker[Session]
    readonly_sessions: sessionmaker[Session]
    analyst: AnalystSQL  # analyst SQL's own engine, slots and threads
    node_keys: NodeKeyCache
    throttle: FailureThrottle = field(default_factory=FailureThrottle)
    checkins: LastSeen = field(default_factory=LastSeen)
    token_uses: LastSeen = field(default_factory=lambda: LastSeen(precision=60))
    labels: LabelQueue = field(default_factory=LabelQueue)
    campaigns: CampaignQueue = field(default_factory=CampaignQueue)
    detection: DetectionService | None = None
    replays: ReplayJobs | None = None
    packs: PackIndex = field(default_factory=PackIndex)
    hunts: HuntService | None = None
    #: False for an app run in a client's own process over the store (``local.py``):
    #: no host reaches it, so nothing that needs hosts online may start.
    serves_hosts: bool = True
    #: Digests of admin tokens this process made for itself, accepted beside the store's.
    own_token_digests: tuple[str, ...] = ()
    #: The key console session cookies are signed with, once read from the store.
    console_key: str | None = None
    _packs_loaded: float = 0.0
    _carves_checked: float = 0.0
    _partitions_kept: float | None = None
    _secrets: tuple[float, dict[str, enroll_secrets.Accepted]] = (0.0, {})
    _grants: tuple[float, dict[str, user_store.Grant]] = (0.0, {})
    _events_seen: set[int] = field(default_factory=set)
    _events_pruned: float = 0.0

    @classmethod
    def create(cls, settings: Settings, role: WorkerRole | None = None) -> ServerState:
        role = role or WorkerRole()
        engine = make_engine(settings.db_url)
        ro = make_engine(settings.db_url, readonly=True)
        sessions = make_sessionmaker(engine)
        readonly_sessions = make_sessionmaker(ro)
        detection = detection_service(settings, engine, sessions, role)
        return cls(
            settings=settings,
            engine=engine,
            readonly_engine=ro,
            sessions=sessions,
            readonly_sessions=readonly_sessions,
            analyst=AnalystSQL(settings, engine),
            node_keys=NodeKeyCache(ttl=settings.node_key_ttl),
            detection=detection,
            replays=ReplayJobs(detection, readonly_sessions),
        )

    def enroll_secrets(self) -> dict[str, enroll_secrets.Accepted]:
        """digest -> what each enroll secret does, re-read at most every 10 s (and at once
        after ``forget_grants``: a revoked secret enrolls nothing from then on)."""
        fetched, accepted = self._secrets
        if time.monotonic() - fetched > 10:
            with session_scope(self.readonly_sessions) as session:
                accepted = enroll_secrets.accepted(session)
            self._secrets = (time.monotonic(), accepted)
        return accepted

    def grant(self, token_digest: str) -> user_store.Grant | None:
        """What the token allows: from every token, re-read at most every 10 s (and at
        once after ``forget_grants``); a token not among them (made since, by another
        process) is looked up on its own."""
        fetched, grants = self._grants
        if time.monotonic() - fetched > 10:
            with session_scope(self.readonly_sessions) as session:
                grants = user_store.grants(session)
            self._grants = (time.monotonic(), grants)
        found = grants.get(token_digest)
        if found is None:
            with session_scope(self.readonly_sessions) as session:
                found = user_store.grant(session, token_digest)
            if found is not None:
                grants[token_digest] = found
        return found

    def forget_grants(self) -> None:
        """Read the tokens and enroll secrets again before the next call is let in (a
        token or secret was revoked, a user disabled or given another role, here or in
        another process)."""
        self._grants = (0.0, {})
        self._secrets = (0.0, {})

    def reload_node_keys(self) -> None:
        with session_scope(self.readonly_sessions) as session:
            self.node_keys.replace_all(host_store.node_keys(session))

    def reload_packs(self) -> None:
        """Refresh what ingest knows of the applied packs (every few seconds)."""
        if time.monotonic() - self._packs_loaded < 10:
            return
        with session_scope(self.readonly_sessions) as session:
            self.packs = PackIndex.of(session)
        self._packs_loaded = time.monotonic()

    def housekeep(self) -> None:
        """One round of the periodic work: write buffered check-ins, token uses and hand-outs,
        reload what other replicas (or the admin API) may have changed, and now and
        then expire stalled carves."""
        self.flush_checkins()
        self.flush_sent()
        if self.node_keys.stale():
            self.reload_node_keys()
        self.follow_events()
        if self.labels.stale():
            self.reload_labels()
        self.reload_packs()
        if self.campaigns.stale():
            self.reload_campaigns()
        if time.monotonic() - self._carves_checked >= CARVE_EXPIRY_EVERY:
            self.expire_carves(int(time.time()))
        kept = self._partitions_kept
        if self.serves_hosts and (
            kept is None or time.monotonic() - kept >= PARTITION_UPKEEP_EVERY
        ):
            self.keep_partitions()

    def keep_partitions(self) -> list[str]:
        """Make the result history's day partitions ahead of need and give rows that came
        late their day's (``storage.partitions``; nothing on SQLite)."""
        self._partitions_kept = time.monotonic()  # a failing round waits for the next one
        with session_scope(self.sessions) as session:
            return partitions.ensure_days(session, lock_timeout_s=10).created

    def follow_events(self) -> None:
        """Act on what other server processes changed (after any node-key reload in the
        same round, so a key forgotten here is not loaded back from an older read):
        forget the cached keys of re-enrolled and deleted hosts, and the tokens after a
        revocation or a user's change. Now and then, prune
        old events."""
        now = int(time.time())
        with session_scope(self.readonly_sessions) as session:
            events = coordination.recent_events(session, now - EVENT_WINDOW)
        new = [
            (kind, host_id)
            for event_id, kind, host_id in events
            if event_id not in self._events_seen
        ]
        hosts = {h for kind, h in new if kind == coordination.NODE_KEY and h is not None}
        if hosts:
            self.node_keys.forget_hosts(hosts)
        if any(kind == coordination.ACCESS for kind, _ in new):
            self.forget_grants()
        self._events_seen = {event_id for event_id, _, _ in events}
        if time.monotonic() - self._events_pruned >= EVENT_PRUNE_EVERY:
            self._events_pruned = time.monotonic()
            with session_scope(self.sessions) as session:
                coordination.prune_events(session, now - 2 * EVENT_WINDOW)

    def expire_carves(self, now: int) -> int:
        """Expire carves whose blocks stopped coming (``Settings.carve_timeout``)."""
        self._carves_checked = time.monotonic()  # a failing round waits for the next one
        with session_scope(self.sessions) as session:
            return carves.expire_stalled(session, now, self.settings.carve_timeout)

    def flush_sent(self) -> None:
        """Write the campaign queries handed to hosts since the last flush."""
        sent = self.campaigns.sent()
        if sent:
            with session_scope(self.sessions) as session:
                campaign_store.mark_sent(session, sent)
            self.campaigns.written(sent)

    def reload_campaigns(self) -> None:
        """Queued campaign targets into memory; expire campaigns past their time."""
        now = int(time.time())
        self.flush_sent()
        mark = self.campaigns.mark()
        with session_scope(self.sessions) as session:
            campaign_store.expire(session, now)
            pending = campaign_store.pending(session, now)
        self.campaigns.load(pending, mark)

    def reload_labels(self) -> None:
        with session_scope(self.readonly_sessions) as session:
            self.labels.load(label_store.dynamic_labels(session), label_store.evaluations(session))

    def flush_checkins(self) -> None:
        """Write the buffered check-in times of hosts and last-use times of tokens."""
        hosts, tokens = self.checkins.take(), self.token_uses.take()
        if hosts or tokens:
            with session_scope(self.sessions) as session:
                host_store.touch_hosts(session, hosts)
                user_store.touch_tokens(session, tokens)

    def start_hunts(self) -> None:
        self.hunts = HuntService(self.engine, self.sessions, self.campaigns, self.settings.home)
        self.hunts.start()

    def close(self) -> None:
        if self.replays is not None:
            self.replays.stop()
        if self.hunts is not None:
            self.hunts.stop()
        if self.detection is not None:
            self.detection.stop()
        self.flush_checkins()
        self.flush_sent()
        self.analyst.close()
        self.engine.dispose()
        self.readonly_engine.dispose()


def server_state(request: Request) -> ServerState:
    """The ``ServerState`` an app built by ``build_app`` carries."""
    state: ServerState = request.app.state.fleet
    return state


async def in_session(factory: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """Run ``work(session)`` as one transaction in a worker thread: committed before the
    handler answers, rolled back on any error."""

    def run() -> T:
        with session_scope(factory) as session:
            return work(session)

    return await run_in_threadpool(run)
