"""Status logs and what each host last delivered (session passed in).

A delivery's digests are those of the lines of the last accepted batch of each log type:
osqueryd resends a batch when a reply is lost, and a resent prefix is skipped.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Insert, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.encoding import Encoder, encoder_for
from storage.models import Delivery, StatusLog
from storage.rejected import Rejection, is_data_error, refusal
from storage.runs import StatusLine

DIGEST_BYTES = 8


def delivered(session: Session, host_id: int, log_type: str, digests: list[bytes], now: int) -> int:
    """How many leading lines of this batch were already accepted in the previous one
    (``redelivered``), this batch's digests being kept for the next (``remember``) in
    the same transaction, so a batch rolled back leaves the previous digests in place.
    On PostgreSQL the read and the upsert are one statement (a data-modifying CTE reads
    the row as it was before the statement): every post of every host costs one round
    trip fewer."""
    if not digests:
        return redelivered(session, host_id, log_type, digests)
    if session.get_bind().dialect.name != "postgresql":
        skip = redelivered(session, host_id, log_type, digests)
        remember(session, host_id, log_type, digests, now)
        return skip
    params = {
        "host_id": host_id,
        "log_type": log_type,
        "digests": b"".join(digests),
        "updated_at": now,
    }
    return _skipped(session.scalar(_PG_DELIVER, params), digests)


_PG_DELIVER = text(
    """
    WITH before AS (
        SELECT digests FROM deliveries WHERE host_id = :host_id AND log_type = :log_type
    ), kept AS (
        INSERT INTO deliveries (host_id, log_type, digests, updated_at)
        VALUES (:host_id, :log_type, :digests, :updated_at)
        ON CONFLICT (host_id, log_type)
        DO UPDATE SET digests = excluded.digests, updated_at = excluded.updated_at
    )
    SELECT digests FROM before
    """
)


def redelivered(session: Session, host_id: int, log_type: str, digests: list[bytes]) -> int:
    """How many leading lines of this batch were already accepted in the previous one.
    A Core read: the digests are compared here and replaced by ``remember``, so loading
    them into the session's identity map would only cost a flush and a second load."""
    stored = session.scalar(
        select(Delivery.digests).where(Delivery.host_id == host_id, Delivery.log_type == log_type)
    )
    return _skipped(stored, digests)


def _skipped(stored: bytes | None, digests: list[bytes]) -> int:
    """How many leading lines of a batch with ``digests`` the previous accepted batch,
    whose digests were ``stored``, already held."""
    if stored is None:
        return 0
    step = DIGEST_BYTES
    prev = [stored[i : i + step] for i in range(0, len(stored), step)]
    if prev and digests[: len(prev)] == prev:
        return len(prev)
    if digests and prev[: len(digests)] == digests:
        return len(digests)
    return 0


@functools.cache
def _upsert_delivery(dialect: str) -> Insert:
    """The upsert of a host's last delivery on ``dialect``, built once: a statement made
    per call costs SQLAlchemy a cache-key walk on every post."""
    key = [Delivery.host_id, Delivery.log_type]
    if dialect == "postgresql":
        pg = postgresql.insert(Delivery)
        return pg.on_conflict_do_update(
            index_elements=key,
            set_={"digests": pg.excluded.digests, "updated_at": pg.excluded.updated_at},
        )
    lite = sqlite.insert(Delivery)
    return lite.on_conflict_do_update(
        index_elements=key,
        set_={"digests": lite.excluded.digests, "updated_at": lite.excluded.updated_at},
    )


def remember(session: Session, host_id: int, log_type: str, digests: list[bytes], now: int) -> None:
    """Keep the digests of the batch just accepted, for the next ``redelivered``: one
    upsert, as each post of every host ends with it."""
    params = {
        "host_id": host_id,
        "log_type": log_type,
        "digests": b"".join(digests),
        "updated_at": now,
    }
    session.execute(_upsert_delivery(session.get_bind().dialect.name), params)


def _status_row(host_id: int, line: StatusLine, enc: Encoder) -> dict[str, Any]:
    return {
        "host_id": host_id,
        "unix_time": line.unix_time,
        "severity": line.severity,
        "filename": enc.text(line.filename),
        "line": line.line,
        "message": enc.text(line.message),
        "version": enc.text(line.version),
        "decorations": None if line.decorations is None else dict(enc.row(line.decorations)),
    }


def insert_statuses(
    session: Session, host_id: int, lines: Sequence[StatusLine], one_by_one: bool
) -> list[Rejection]:
    """Store status lines as osqueryd sent them; ``one_by_one``: each under a savepoint,
    quarantining those the database refuses with a data error."""
    enc = encoder_for(session)
    if not one_by_one:
        if lines:
            session.execute(insert(StatusLog), [_status_row(host_id, s, enc) for s in lines])
        return []
    refused: list[Rejection] = []
    for line in lines:
        try:
            with session.begin_nested():
                session.execute(insert(StatusLog), [_status_row(host_id, line, enc)])
        except Exception as exc:
            if not is_data_error(exc):
                raise
            refused.append(Rejection(line.index, refusal(exc)))
    return refused


def add_server_status(
    session: Session, host_id: int, now: int, filename: str, message: str, version: str
) -> None:
    """A warning the server itself logs for a host, beside the host's own status lines."""
    session.add(
        StatusLog(
            host_id=host_id,
            unix_time=now,
            severity=1,
            filename=filename,
            line=0,
            message=message,
            version=version,
            decorations=None,
        )
    )


def status_logs(session: Session, host_id: int, limit: int) -> list[StatusLog]:
    """The host's ``limit`` newest status lines, newest first."""
    return list(
        session.scalars(
            select(StatusLog)
            .where(StatusLog.host_id == host_id)
            .order_by(StatusLog.unix_time.desc(), StatusLog.id.desc())
            .limit(limit)
        )
    )
