"""What the osquery endpoints do, as plain functions over a Session.

Handlers in ``osquery_api`` parse and authenticate; these functions validate the
payload and write it in the caller's transaction, so a failure anywhere rolls the
whole request back and osqueryd resends it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from fleetctl.errors import BadRequest
from fleetctl.ingest import (
    iter_host_identifiers,
    line_digest,
    parse_result_lines,
    parse_status_lines,
)
from fleetctl.server.osquery_config import PACK_DELIMITER
from storage import hosts as host_store
from storage import packs as pack_store
from storage.models import Delivery, Host, StatusLog
from storage.results import ApplyStats, apply_runs

log = logging.getLogger("fleetctl.server")


@dataclass(frozen=True)
class PackIndex:
    """What ingest needs to know of the applied packs: their names (to split logged
    names with ``_`` in pack names) and the logged names of ``removed: false`` queries."""

    pack_names: tuple[str, ...] = ()
    no_removed_names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, session: Session) -> PackIndex:
        names, quiet = [], set()
        for stored in pack_store.current_packs(session):
            names.append(stored.name)
            for query in stored.targeted().pack.queries:
                if not query.removed:
                    quiet.add(f"pack{PACK_DELIMITER}{stored.name}{PACK_DELIMITER}{query.name}")
        return cls(tuple(names), frozenset(quiet))


def lock_host(session: Session, host_id: int) -> Host:
    """Serialise writes per host for the rest of the transaction.

    PostgreSQL: a transaction-scoped advisory lock, so check-in updates of the host row
    never wait behind an ingest. SQLite: the write transaction already holds the lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": host_id})
    host = session.get(Host, host_id)
    if host is None:
        raise BadRequest("host was deleted")
    return host


def _redelivered(session: Session, host_id: int, log_type: str, digests: list[bytes]) -> int:
    """How many leading lines of this batch were already accepted in the previous one."""
    row = session.get(Delivery, (host_id, log_type))
    if row is None:
        return 0
    prev = [row.digests[i : i + 8] for i in range(0, len(row.digests), 8)]
    if prev and digests[: len(prev)] == prev:
        return len(prev)
    if digests and prev[: len(digests)] == digests:
        return len(digests)
    return 0


def _remember(
    session: Session, host_id: int, log_type: str, digests: list[bytes], now: int
) -> None:
    row = session.get(Delivery, (host_id, log_type))
    blob = b"".join(digests)
    if row is None:
        session.add(Delivery(host_id=host_id, log_type=log_type, digests=blob, updated_at=now))
    else:
        row.digests, row.updated_at = blob, now


def _check_identifiers(session: Session, host: Host, identifiers: set[str]) -> None:
    foreign = identifiers - {host.host_identifier, host.hostname}
    if foreign:
        other = host_store.other_host_with_identifier(session, host.id, foreign)
        if other is not None:
            raise BadRequest(
                f"batch contains lines for host {other!r}, which is another enrolled host; "
                "each host sends only its own results"
            )


def ingest_log(
    session: Session,
    host_id: int,
    log_type: Any,
    data: Any,
    now: int,
    packs: PackIndex | None = None,
) -> ApplyStats:
    """Validate and apply one ``log`` request for one host."""
    if log_type not in ("result", "status"):
        raise BadRequest(f"unknown log_type {log_type!r}: expected 'result' or 'status'")
    if not isinstance(data, list):
        raise BadRequest(f"'data' must be a list of log lines, got {type(data).__name__}")
    host = lock_host(session, host_id)
    digests = [line_digest(line) for line in data]
    skip = _redelivered(session, host_id, log_type, digests)
    lines = data[skip:]
    stats = ApplyStats(skipped_runs=0)
    if log_type == "result":
        runs = parse_result_lines(lines)
        _check_identifiers(session, host, set(iter_host_identifiers(runs)))
        index = packs or PackIndex()
        stats = apply_runs(session, host_id, runs, now, index.pack_names, index.no_removed_names)
        decorated = next((r.decorations for r in reversed(runs) if r.decorations), None)
        if decorated is not None and decorated != host.decorations:
            host.decorations = decorated
    else:
        statuses = parse_status_lines(lines)
        _check_identifiers(session, host, set(iter_host_identifiers(statuses)))
        if statuses:
            session.execute(
                insert(StatusLog),
                [
                    {
                        "host_id": host_id,
                        "unix_time": s.unix_time,
                        "severity": s.severity,
                        "filename": s.filename,
                        "line": s.line,
                        "message": s.message,
                        "version": s.version,
                        "decorations": s.decorations,
                    }
                    for s in statuses
                ],
            )
    if data:
        _remember(session, host_id, log_type, digests, now)
    return stats


def count_hosts(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Host)) or 0
