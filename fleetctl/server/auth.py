"""Secrets: node keys, enroll secrets and admin tokens.

Only SHA-256 digests are stored; comparisons are constant-time; logs carry a short
fingerprint, never the secret. Verified node keys are remembered in memory for a
short TTL so that check-ins cost no database round trip.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from starlette.requests import Request

T = TypeVar("T")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def fingerprint(secret: str) -> str:
    """A short, non-reversible label for logs."""
    return digest(secret)[:8]


def new_secret(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def find_match(secret: str, by_digest: Mapping[str, T]) -> T | None:
    """What ``by_digest`` holds under the digest of ``secret``: compared in constant time
    with every stored digest (no early exit)."""
    offered = digest(secret).encode()
    found: T | None = None
    for stored, value in by_digest.items():
        if hmac.compare_digest(offered, stored.encode()):
            found = value
    return found


@dataclass(frozen=True)
class CachedNode:
    host_id: int
    host_identifier: str
    family: str = "linux"


@dataclass
class NodeKeyCache:
    """node-key digest -> host, for every enrolled host.

    Loaded whole at start and reloaded every ``ttl`` seconds (one query); a key missing
    from memory is looked up once in the database and remembered. A key re-issued or
    revoked by another server process (a worker of ``serve --workers``, a replica) is
    forgotten when its change event arrives (``ServerState.follow_events``, every
    second), and at the latest at the next reload.

    ``forgets`` counts the hosts forgotten: a lookup that read the database before a
    forget must not put back what it read (it may be the old key).
    """

    ttl: float = 60.0
    _entries: dict[str, CachedNode] = field(default_factory=dict)
    loaded_at: float = 0.0
    forgets: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key_digest: str) -> CachedNode | None:
        return self._entries.get(key_digest)

    def put(
        self,
        key_digest: str,
        host_id: int,
        host_identifier: str,
        family: str,
        *,
        read_at: int | None = None,
    ) -> CachedNode:
        """Remember a verified key; ``read_at``: ``forgets`` when it was read from the
        database, so a host forgotten since is not remembered with it."""
        entry = CachedNode(host_id, host_identifier, family)
        with self._lock:
            if read_at is None or read_at == self.forgets:
                self._entries[key_digest] = entry
        return entry

    def replace_all(self, rows: Iterable[tuple[str, int, str, str]]) -> None:
        self._entries = {k: CachedNode(h, ident, fam) for k, h, ident, fam in rows}
        self.loaded_at = time.monotonic()

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at > self.ttl

    def forget_host(self, host_id: int) -> None:
        self.forget_hosts({host_id})

    def forget_hosts(self, host_ids: set[int]) -> None:
        with self._lock:
            self.forgets += 1
            for k in [k for k, v in self._entries.items() if v.host_id in host_ids]:
                del self._entries[k]


@dataclass
class FailureThrottle:
    """Slow down repeated failures under one key (an enrolling address) in this process
    (sign-ins are limited in the store, for every process: ``sign_in_limits``).

    The first ``free`` failures in ``window`` seconds answer at once; each further one
    waits twice as long as the last, up to ``max_delay``.
    """

    free: int = 5
    window: float = 60.0
    max_delay: float = 8.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def delay(self, key: str) -> float:
        now = time.monotonic()
        q = self._failures.get(key)
        if not q:
            return 0.0
        while q and q[0] < now - self.window:
            q.popleft()
        excess = len(q) - self.free
        return 0.0 if excess < 0 else min(self.max_delay, 0.25 * 2**excess)

    def record(self, key: str) -> None:
        self._failures.setdefault(key, deque()).append(time.monotonic())
        if len(self._failures) > 10_000:  # bound memory under a spray of keys
            self._failures.pop(next(iter(self._failures)))


def bearer_token(request: Request) -> str:
    """The admin token the request came with ('' without one)."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""
