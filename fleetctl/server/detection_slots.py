"""Which hosts this server process judges: detection spread over processes by host.

Hosts are hashed to ``count`` slots (``host_id % count``), one per worker of
``serve --workers``; worker ``index`` judges slot ``index`` while it holds that slot's
fleet-wide lock (``fleet_locks``). So each host has one judge at a time, and that judge
keeps the host's in-memory state (``HostDetection``) for as long as it lives. A worker
that dies frees its lock with its process or connection; the worker started in its place
takes the slot, and with it the hosts the store still has pending
(``storage.coordination`` marks). Replicas sharing a store take part the same way when
they run the same ``--workers``: each slot is held by one process of them all.

A ``log`` post stored by a process that does not own the host's slot leaves the store's
mark and the batch's row changes (``storage.coordination.keep_changes``); the owner reads
the marks of its slot every second and moves such a host forward from them. Under
``serve --detection-processes M`` the M judge processes hold the slots (``M`` of them)
and the workers that serve hosts hold none: every batch reaches its judge that way.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from storage import fleet_locks

log = logging.getLogger("fleetctl.detection")


@dataclass
class DetectionSlot:
    """Slot ``index`` of ``count``, held by this process or not (yet)."""

    engine: Engine
    home: Path
    index: int | None = 0  # None: this process judges no slot (it only serves hosts)
    count: int = 1
    _lock: fleet_locks.HeldLock | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def held(self) -> bool:
        return self._lock is not None

    def owns(self, host_id: int) -> bool:
        """Whether this process judges ``host_id`` now."""
        return self._lock is not None and host_id % self.count == self.index

    def refresh(self) -> bool:
        """Keep the slot's lock, or take it when it is free; whether it is held. A lock
        found lost (a dropped database connection) is let go: another process may hold
        the slot by now."""
        with self._guard:
            if self._lock is not None and not self._lock.alive():
                log.warning("lost detection slot %d of %d", self.index, self.count)
                self._lock.release()
                self._lock = None
            if self._lock is None and self.index is not None:
                key = fleet_locks.SLOT_BASE + self.index
                self._lock = fleet_locks.try_lock(self.engine, self.home, key)
                if self._lock is not None:
                    log.info("judging detection slot %d of %d", self.index, self.count)
            return self._lock is not None

    def release(self) -> None:
        with self._guard:
            if self._lock is not None:
                self._lock.release()
                self._lock = None
