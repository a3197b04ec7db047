"""Distributed (live) queries: read, run, write (``protocol.md`` section 4).

``osquery/distributed/distributed.cpp`` and ``dispatcher/distributed_runner.cpp``:

* read answers ``queries`` {id: SQL}, optional ``discovery`` {id: SQL} and
  ``accelerate`` (integer seconds of 5 s polling). Discovery runs at read time: no rows
  means the id is skipped and never written; an SQL error rejects the whole answer. A
  non-string or empty query stops parsing; ids parsed before it stay queued.
* write sends ``queries`` {id: [rows, values as strings, keys in SQL order]} (``[]`` on
  error), ``statuses`` {id: 0 | 1}, ``messages`` {id: "" | error} and ``stats``.
* a query is marked running (by SHA-256 of its SQL) while it runs; if the agent dies
  meanwhile, that SQL is refused for ``--distributed_denylist_duration`` with status 1.
* reads and writes try ``--distributed_tls_max_attempts`` times, ``i^2`` s apart; results
  whose write failed are kept and sent with the next write.
"""

from __future__ import annotations

import hashlib
import logging
import os
import resource
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fleetctl.agent.client import RemoteClient
from fleetctl.agent.engines import QueryEngine
from fleetctl.agent.errors import EngineError, RequestFailed
from fleetctl.agent.flags import Flags
from fleetctl.agent.state import StateDB
from fleetctl.engine import string_rows

log = logging.getLogger("fleetctl.agent")

ACCELERATED_INTERVAL = 5
ACCELERATE_KEY = "distributed_accelerate_checkins_expire"
DENYLISTED = "distributed query is denylisted"

T = TypeVar("T")


class RejectedRead(ValueError):
    """The read answer cannot be accepted (a discovery query failed)."""


@dataclass
class Work:
    queries: dict[str, str] = field(default_factory=dict)
    accelerate: int | None = None


@dataclass
class Results:
    """A write payload under construction."""

    queries: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)

    def merge(self, other: Results) -> None:
        self.queries.update(other.queries)
        self.statuses.update(other.statuses)
        self.messages.update(other.messages)
        self.stats.update(other.stats)

    def payload(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "statuses": self.statuses,
            "messages": self.messages,
            "stats": self.stats,
        }

    def __bool__(self) -> bool:
        return bool(self.statuses)


def parse_read(answer: Mapping[str, Any], count_rows: Callable[[str], int]) -> Work:
    """The queries to run from a read answer, discovery applied."""
    queries = answer.get("queries") or {}
    discovery = answer.get("discovery") or {}
    if not isinstance(queries, Mapping) or not isinstance(discovery, Mapping):
        raise RejectedRead("'queries' and 'discovery' must be objects")
    parsed: dict[str, str] = {}
    for qid, sql in queries.items():
        if not isinstance(sql, str) or not sql or not qid:
            log.warning("Distributed query %r is not a non-empty string: parsing stops", qid)
            break
        parsed[str(qid)] = sql
    work = Work()
    for qid, sql in parsed.items():
        check = discovery.get(qid)
        if check is not None:
            if not isinstance(check, str):
                raise RejectedRead(f"discovery query of {qid} is not a string")
            try:
                if count_rows(check) == 0:
                    continue
            except EngineError as exc:
                raise RejectedRead(f"discovery query of {qid} failed: {exc.message}") from exc
        work.queries[qid] = sql
    accelerate = answer.get("accelerate")
    if isinstance(accelerate, int) and not isinstance(accelerate, bool):
        work.accelerate = accelerate
    return work


def _usage() -> tuple[float, int, int, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    try:
        with open("/proc/self/statm") as fh:
            rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        rss = 0
    return time.monotonic(), int(r.ru_utime * 1000), int(r.ru_stime * 1000), rss


class DistributedRunner:
    def __init__(
        self, engine: QueryEngine, client: RemoteClient, state: StateDB, flags: Flags
    ) -> None:
        self._engine = engine
        self._client = client
        self._state = state
        self._flags = flags
        self._unsent = Results()
        self._lock = threading.Lock()

    def _count_rows(self, sql: str) -> int:
        return len(self._engine.query(sql).rows)

    def run_query(self, qid: str, sql: str, into: Results) -> None:
        digest = hashlib.sha256(sql.encode()).hexdigest()
        now = int(time.time())
        with self._state.transaction() as conn:
            row = conn.execute(
                "SELECT started_at FROM distributed_running WHERE digest = ?", (digest,)
            ).fetchone()
            denylist = self._flags.get_int("distributed_denylist_duration")
            if row is not None and now - row[0] < denylist:
                into.queries[qid], into.statuses[qid], into.messages[qid] = [], 1, DENYLISTED
                into.stats[qid] = {}
                return
            conn.execute("INSERT OR REPLACE INTO distributed_running VALUES (?, ?)", (digest, now))
        before = _usage()
        try:
            result = self._engine.query(sql)
            into.queries[qid] = string_rows(result.rows, result.columns)
            into.statuses[qid], into.messages[qid] = 0, ""
        except EngineError as exc:
            into.queries[qid], into.statuses[qid], into.messages[qid] = [], 1, exc.message
        after = _usage()
        into.stats[qid] = {
            "wall_time_ms": int((after[0] - before[0]) * 1000),
            "user_time": after[1] - before[1],
            "system_time": after[2] - before[2],
            "memory": max(0, after[3] - before[3]),
        }
        with self._state.transaction() as conn:
            conn.execute("DELETE FROM distributed_running WHERE digest = ?", (digest,))

    def _attempts(self, call: Callable[[], T], stop: threading.Event) -> T:
        attempts = max(1, self._flags.get_int("distributed_tls_max_attempts"))
        for i in range(1, attempts + 1):
            try:
                return call()
            except RequestFailed:
                if i == attempts or stop.wait(i * i):
                    raise
        raise AssertionError("unreachable")

    def cycle(self, stop: threading.Event) -> Results:
        """One read -> run -> write; returns what was written (empty if nothing)."""
        with self._lock:
            try:
                answer = self._attempts(self._client.distributed_read, stop)
                work = parse_read(answer, self._count_rows)
            except RequestFailed as exc:
                log.info("distributed read failed: %s", exc)
                work = Work()
            except RejectedRead as exc:
                log.warning("distributed read rejected: %s", exc)
                work = Work()
            if work.accelerate is not None:
                self._state.put(ACCELERATE_KEY, str(int(time.time()) + work.accelerate))
            results = Results()
            for qid, sql in work.queries.items():
                if stop.is_set():
                    break
                self.run_query(qid, sql, results)
            pending = Results()
            pending.merge(self._unsent)
            pending.merge(results)
            if not pending:
                return pending
            try:
                self._attempts(lambda: self._client.distributed_write(pending.payload()), stop)
            except RequestFailed as exc:
                log.info("distributed write failed, kept for the next one: %s", exc)
                self._unsent = pending
                return Results()
            self._unsent = Results()
            return pending

    def interval(self) -> int:
        expire = self._state.get(ACCELERATE_KEY)
        if expire and expire.isdigit() and int(expire) > time.time():
            return ACCELERATED_INTERVAL
        return max(1, self._flags.get_int("distributed_interval"))

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.cycle(stop)
            except Exception:
                log.exception("distributed cycle failed")
            if stop.wait(self.interval()):
                return
