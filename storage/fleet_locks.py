"""Locks one process among every server process on a store holds: the hunt scheduler's
leadership and each detection slot.

PostgreSQL: a session advisory lock on a connection kept open for as long as the lock
is held (two-key locks, a key space apart from the per-host single-key ones). SQLite
(one machine by construction): ``flock`` on a file under ``$FLEETCTL_HOME/locks``. Either
way the operating system or the database frees the lock when its holder dies, so another
process takes it over at its next try.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, text

LOCK_CLASS = 0x4657  # "FW": fleetctl worker locks (key: what is locked)
HUNT_LEADER = 0
SLOT_BASE = 1  # detection slot i is key SLOT_BASE + i


class HeldLock(Protocol):
    def alive(self) -> bool:
        """Whether the lock is still held (a database connection may have dropped)."""

    def release(self) -> None: ...


class AdvisoryLock:
    """A PostgreSQL session advisory lock, held by its own open connection."""

    def __init__(self, conn: Any, key: int) -> None:
        self._conn = conn
        self.key = key

    def alive(self) -> bool:
        try:
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid() AND classid = :cls AND objid = :key"
                    " AND granted"
                ),
                {"cls": LOCK_CLASS, "key": self.key},
            ).scalar()
            self._conn.commit()
        except Exception:
            return False
        return bool(held)

    def release(self) -> None:
        # Invalidate, not close: a pooled connection would keep the session, and with it
        # the advisory lock, alive.
        try:
            self._conn.invalidate()
            self._conn.close()
        except Exception:
            pass


class FileLock:
    """An exclusive ``flock`` on a file, held by its open descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def alive(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def try_lock(engine: Engine, home: Path, key: int) -> HeldLock | None:
    """Lock ``key`` for this process, or None when another process holds it."""
    if engine.dialect.name == "postgresql":
        return _try_advisory(engine, key)
    return _try_file(home / "locks" / f"lock-{key}", key)


def _try_advisory(engine: Engine, key: int) -> HeldLock | None:
    conn = engine.connect()
    try:
        got = conn.execute(
            text("SELECT pg_try_advisory_lock(:cls, :key)"), {"cls": LOCK_CLASS, "key": key}
        ).scalar()
        conn.commit()
    except Exception:
        conn.invalidate()
        conn.close()
        raise
    if got:
        return AdvisoryLock(conn, key)
    conn.close()
    return None


def _try_file(path: Path, key: int) -> HeldLock | None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return FileLock(fd)
