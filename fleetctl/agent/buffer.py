"""The on-disk log buffer and the TLS logger loop that empties it.

``plugins/logger/buffered.cpp`` ``BufferedLogForwarder::check``, every
``--logger_tls_period`` seconds: take the oldest ``--logger_tls_max_lines`` buffered
lines (results and statuses together), send results and statuses as separate requests,
and delete the lines of a request only once the server answered it without ``error``
or ``node_invalid``. A failed channel backs off ``period * n^2`` seconds after its n-th
consecutive failure, capped at ``--logger_tls_backoff_max`` (0: no backoff). Lines
longer than ``--logger_tls_max_linesize`` are dropped when buffered; beyond
``--buffered_log_max`` lines the oldest are purged, as osqueryd does.

Lines are sent oldest first and a resent batch starts with the same lines, so a server
that remembers the last batch it accepted (ours does) can skip a redelivery whose
answer was lost.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fleetctl.agent.client import RemoteClient
from fleetctl.agent.errors import RequestFailed
from fleetctl.agent.flags import Flags
from fleetctl.agent.state import StateDB

log = logging.getLogger("fleetctl.agent")

LOG_TYPES = ("result", "status")


def append_lines(
    conn: sqlite3.Connection, log_type: str, lines: Iterable[Mapping[str, Any]], max_size: int
) -> int:
    """Buffer ``lines`` in the caller's transaction; return how many were too long."""
    encoded = [orjson.dumps(line) for line in lines]
    kept = [line for line in encoded if max_size <= 0 or len(line) <= max_size]
    conn.executemany(
        "INSERT INTO log_buffer (log_type, line) VALUES (?, ?)", [(log_type, line) for line in kept]
    )
    return len(encoded) - len(kept)


class LogBuffer:
    def __init__(self, state: StateDB) -> None:
        self._state = state

    def oldest(self, limit: int) -> list[tuple[int, str, bytes]]:
        with self._state.reading() as conn:
            return [
                (int(i), str(t), bytes(line))
                for i, t, line in conn.execute(
                    "SELECT id, log_type, line FROM log_buffer ORDER BY id LIMIT ?", (limit,)
                )
            ]

    def delete(self, ids: list[int]) -> None:
        with self._state.transaction() as conn:
            conn.executemany("DELETE FROM log_buffer WHERE id = ?", [(i,) for i in ids])

    def count(self, log_type: str | None = None) -> int:
        with self._state.reading() as conn:
            if log_type is None:
                row = conn.execute("SELECT count(*) FROM log_buffer").fetchone()
            else:
                row = conn.execute(
                    "SELECT count(*) FROM log_buffer WHERE log_type = ?", (log_type,)
                ).fetchone()
        return int(row[0])

    def purge(self, max_lines: int) -> int:
        """Drop the oldest lines beyond ``max_lines`` (0: keep everything)."""
        if max_lines <= 0:
            return 0
        with self._state.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM log_buffer WHERE id IN (SELECT id FROM log_buffer "
                "ORDER BY id DESC LIMIT -1 OFFSET ?)",
                (max_lines,),
            )
            return cursor.rowcount


@dataclass
class Backoff:
    """Consecutive failures of one channel and when it may try again."""

    failures: int = 0
    until: float = 0.0

    def ready(self, now: float) -> bool:
        return now >= self.until

    def failed(self, now: float, period: int, cap: int) -> None:
        self.failures += 1
        self.until = now + min(period * self.failures**2, cap) if cap > 0 else now

    def succeeded(self) -> None:
        self.failures, self.until = 0, 0.0


class LogForwarder:
    """The logger loop of one agent."""

    def __init__(
        self,
        buffer: LogBuffer,
        client: RemoteClient,
        flags: Flags,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.buffer = buffer
        self._client = client
        self._flags = flags
        self._clock = clock
        self.backoff = {t: Backoff() for t in LOG_TYPES}
        self.requests: dict[str, int] = dict.fromkeys(LOG_TYPES, 0)
        self.largest_batch = 0
        self._lock = threading.Lock()

    def check(self) -> bool:
        """One flush; True when every line taken was delivered."""
        with self._lock:
            limit = max(1, self._flags.get_int("logger_tls_max_lines"))
            taken = self.buffer.oldest(limit)
            delivered = True
            for log_type in LOG_TYPES:
                batch = [(i, line) for i, t, line in taken if t == log_type]
                if not batch or not self.backoff[log_type].ready(self._clock()):
                    delivered = delivered and not batch
                    continue
                delivered = self._send(log_type, batch) and delivered
            purged = self.buffer.purge(self._flags.get_int("buffered_log_max"))
            if purged:
                log.warning("purged %d buffered log lines beyond buffered_log_max", purged)
            return delivered

    def _send(self, log_type: str, batch: list[tuple[int, bytes]]) -> bool:
        try:
            self._client.log(log_type, [line for _, line in batch])
        except RequestFailed as exc:
            self.backoff[log_type].failed(
                self._clock(),
                self._flags.get_int("logger_tls_period"),
                self._flags.get_int("logger_tls_backoff_max"),
            )
            log.info(
                "could not send %d %s lines (%s); they stay buffered", len(batch), log_type, exc
            )
            return False
        self.buffer.delete([i for i, _ in batch])
        self.backoff[log_type].succeeded()
        self.requests[log_type] += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        return True

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(max(1, self._flags.get_int("logger_tls_period"))):
            try:
                self.check()
            except Exception:
                log.exception("logger check failed")

    def drain(self, stop: threading.Event, timeout: float, attempts: int = 3) -> bool:
        """Flush until the buffer is empty (True), or until ``timeout`` passes or
        ``attempts`` flushes in a row fail (False)."""
        deadline = time.monotonic() + timeout
        failures = 0
        while self.buffer.count():
            for backoff in self.backoff.values():
                backoff.succeeded()  # draining on purpose: no backoff between tries
            before = self.buffer.count()
            if self.check() and not self.buffer.count():
                return True
            failures = 0 if self.buffer.count() < before else failures + 1
            if failures >= attempts or time.monotonic() > deadline or stop.wait(0.5):
                return False
        return True
