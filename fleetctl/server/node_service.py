"""What the osquery endpoints do, as plain functions over a Session.

Handlers in ``osquery_api`` parse and authenticate; these functions validate the
payload and write it in the caller's transaction, so a failure anywhere rolls the
whole request back and osqueryd resends it. A log line the store cannot hold is the
exception: it is quarantined (``storage.rejected``) and the rest of its batch stored.
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
    Run,
    StatusLine,
    host_identifiers,
    line_digests,
    parse_result_lines,
    parse_status_lines,
)
from fleetctl.server.campaign_queue import parse_campaign_query_id
from fleetctl.server.label_queue import parse_label_query_id
from fleetctl.server.osquery_config import PACK_DELIMITER
from storage import campaigns as campaign_store
from storage import hosts as host_store
from storage import labels as label_store
from storage import packs as pack_store
from storage.encoding import Encoder, encoder_for
from storage.models import Carve, CarveBlock, Delivery, DistributedResult, Host, StatusLog
from storage.rejected import Rejection, is_data_error, record, refusal
from storage.results import ApplyStats, apply_runs, apply_runs_one_by_one

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


def _check_identifiers(session: Session, host: Host, identifiers: set[str]) -> set[str]:
    """The identifiers among ``identifiers`` that name another enrolled host: each host
    sends only its own results, so lines naming another are quarantined, not stored as
    this host's. No query when every line names this host (the usual case), one when no
    other enrolled host is named, then one per stranger."""
    strangers = identifiers - {host.host_identifier, host.hostname}
    if not strangers or host_store.other_host_with_identifier(session, host.id, strangers) is None:
        return set()
    return {
        i
        for i in strangers
        if host_store.other_host_with_identifier(session, host.id, {i}) is not None
    }


def _apply_results(
    session: Session, host: Host, runs: list[Run], now: int, index: PackIndex, one_by_one: bool
) -> tuple[ApplyStats, list[Rejection]]:
    """Apply the runs; the host's decorations become those of the last decorated run."""
    refused: list[Rejection] = []
    if one_by_one:
        stats, failed = apply_runs_one_by_one(
            session, host.id, runs, now, index.pack_names, index.no_removed_names
        )
        refused = [Rejection(i, reason, run.name) for run, reason in failed for i in run.lines]
        dropped = {id(run) for run, _ in failed}
        runs = [run for run in runs if id(run) not in dropped]
    else:
        stats = apply_runs(session, host.id, runs, now, index.pack_names, index.no_removed_names)
    decorated = next((r.decorations for r in reversed(runs) if r.decorations), None)
    if decorated is not None:
        stored = dict(encoder_for(session).row(decorated))
        if stored != host.decorations:
            host.decorations = stored
    return stats, refused


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


def _insert_statuses(
    session: Session, host_id: int, lines: list[StatusLine], one_by_one: bool
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


def ingest_log(
    session: Session,
    host_id: int,
    log_type: Any,
    data: Any,
    now: int,
    packs: PackIndex | None = None,
    *,
    one_by_one: bool = False,
) -> ApplyStats:
    """Validate and apply one ``log`` request for one host.

    Lines that cannot be stored as sent are quarantined with their reason and the rest
    applied, so the batch is acknowledged. ``one_by_one`` is the retry after the
    database refused the batch with a data error: each run (each status line) is
    applied under its own savepoint and one the database refuses is quarantined too.
    """
    if log_type not in ("result", "status"):
        raise BadRequest(f"unknown log_type {log_type!r}: expected 'result' or 'status'")
    if not isinstance(data, list):
        raise BadRequest(f"'data' must be a list of log lines, got {type(data).__name__}")
    host = lock_host(session, host_id)
    digests, unencodable = line_digests(data)
    skip = _redelivered(session, host_id, log_type, digests)
    lines = data[skip:]
    foreign = _check_identifiers(session, host, host_identifiers(lines))
    if log_type == "result":
        index = packs or PackIndex()
        batch = parse_result_lines(
            lines, index.pack_names, start=skip, refused=unencodable, foreign=foreign
        )
        stats, refused = _apply_results(session, host, batch.runs, now, index, one_by_one)
        rejected = batch.rejected
    else:
        statuses, rejected = parse_status_lines(
            lines, start=skip, refused=unencodable, foreign=foreign
        )
        stats, refused = ApplyStats(), _insert_statuses(session, host_id, statuses, one_by_one)
    rejected = sorted([*rejected, *refused], key=lambda r: r.index)
    record(session, host_id, log_type, data, rejected, now)
    stats.rejected = len(rejected)
    if data:
        _remember(session, host_id, log_type, digests, now)
    return stats


def _as_str_rows(rows: Any, qid: str) -> list[dict[str, str]]:
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest(f"queries[{qid!r}] must be a list of row objects")
    return [{str(k): "" if v is None else str(v) for k, v in r.items()} for r in rows]


def distributed_write(
    session: Session, host_id: int, body: Mapping[str, Any], now: int
) -> list[int]:
    """Store each query id's rows, status, message and stats.

    Answers to label queries update label membership instead (member = the query ran
    and returned at least one row); their label ids are returned.
    """
    queries = body.get("queries", {})
    statuses = body.get("statuses", {})
    messages = body.get("messages", {}) or {}
    stats = body.get("stats", {}) or {}
    for key, value in (
        ("queries", queries),
        ("statuses", statuses),
        ("messages", messages),
        ("stats", stats),
    ):
        if not isinstance(value, dict):
            raise BadRequest(f"{key!r} must be an object keyed by query id")
    ids = set(queries) | set(statuses)
    if any(parse_campaign_query_id(qid) is None for qid in ids):
        # Label and other answers replace per-host rows; a campaign answer is a single
        # keyed update and needs no lock (most of a fleet answering a live query).
        lock_host(session, host_id)
    labels_answered: list[int] = []
    for qid in sorted(ids):
        status = statuses.get(qid, 0)
        if isinstance(status, bool) or not isinstance(status, int):
            raise BadRequest(f"statuses[{qid!r}] must be an integer")
        message = messages.get(qid, "")
        if not isinstance(message, str):
            raise BadRequest(f"messages[{qid!r}] must be a string")
        rows = _as_str_rows(queries.get(qid, []), qid)
        campaign_id = parse_campaign_query_id(qid)
        if campaign_id is not None:
            if not campaign_store.record_answer(
                session, campaign_id, host_id, status, message, rows, now
            ):
                log.warning("host %s answered %s, which it was not sent; dropped", host_id, qid)
            continue
        label_id = parse_label_query_id(qid)
        if label_id is not None:
            label_store.record_evaluation(
                session, label_id, host_id, status == 0 and bool(rows), now
            )
            labels_answered.append(label_id)
            continue
        session.execute(
            delete(DistributedResult).where(
                DistributedResult.host_id == host_id, DistributedResult.query_id == qid
            )
        )
        session.add(
            DistributedResult(
                host_id=host_id,
                query_id=str(qid),
                status=status,
                message=message,
                rows=rows,
                stats=stats.get(qid),
                received_at=now,
            )
        )
    return labels_answered


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
