"""What the osquery endpoints do, as plain functions over a Session.

Handlers in ``osquery_api`` parse and authenticate; these functions validate the
payload and write it in the caller's transaction, so a failure anywhere rolls the
whole request back and osqueryd resends it.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, text
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
from storage.models import Carve, CarveBlock, Delivery, Host, StatusLog
from storage.results import ApplyStats, apply_runs

log = logging.getLogger("fleetctl.server")

MAX_CARVE_BYTES = 512 * 1024 * 1024


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


def _positive_int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"{key!r} must be a non-negative integer")
    return value


def carve_begin(session: Session, host_id: int, body: Mapping[str, Any], now: int) -> str:
    block_count = _positive_int(body, "block_count")
    block_size = _positive_int(body, "block_size")
    carve_size = _positive_int(body, "carve_size")
    if carve_size > MAX_CARVE_BYTES:
        raise BadRequest(f"carve of {carve_size} bytes exceeds the {MAX_CARVE_BYTES}-byte limit")
    if block_count == 0 or block_size == 0 or block_count * block_size < carve_size:
        raise BadRequest("block_count * block_size must cover carve_size")
    session_id = secrets.token_urlsafe(24)
    session.add(
        Carve(
            host_id=host_id,
            session_id=session_id,
            carve_id=str(body.get("carve_id", "")),
            request_id=str(body.get("request_id", "")),
            block_count=block_count,
            block_size=block_size,
            carve_size=carve_size,
            blocks_received=0,
            created_at=now,
        )
    )
    return session_id


def carve_block(session: Session, body: Mapping[str, Any], now: int) -> Carve:
    """Store one block; assemble the archive when the last one arrives."""
    session_id = body.get("session_id")
    if not isinstance(session_id, str):
        raise BadRequest("'session_id' must be a string")
    carve = session.scalars(
        select(Carve).where(Carve.session_id == session_id).with_for_update()
    ).first()
    if carve is None:
        raise BadRequest("unknown carve session_id")
    block_id = _positive_int(body, "block_id")
    if block_id >= carve.block_count:
        raise BadRequest(f"block_id {block_id} out of range 0..{carve.block_count - 1}")
    data = body.get("data")
    if not isinstance(data, str):
        raise BadRequest("'data' must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"'data' is not valid base64: {exc}") from exc
    if len(raw) > carve.block_size:
        raise BadRequest("block larger than the announced block_size")
    already = session.get(CarveBlock, (carve.id, block_id)) is not None
    if carve.completed_at is not None or already:
        return carve  # a resent block: already stored
    session.add(CarveBlock(carve_id=carve.id, block_id=block_id, data=raw))
    carve.blocks_received += 1
    if carve.blocks_received == carve.block_count:
        session.flush()
        blocks = session.scalars(
            select(CarveBlock.data)
            .where(CarveBlock.carve_id == carve.id)
            .order_by(CarveBlock.block_id)
        )
        archive = b"".join(blocks)
        carve.archive = archive
        carve.compression = "zstd" if archive[:4] == b"\x28\xb5\x2f\xfd" else "none"
        carve.completed_at = now
        session.execute(delete(CarveBlock).where(CarveBlock.carve_id == carve.id))
    return carve


def count_hosts(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Host)) or 0
