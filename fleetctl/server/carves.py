"""File carves: ``carve/begin`` and ``carve/block``, within the size a host declared.

osqueryd announces an archive of ``carve_size`` bytes in ``block_count`` blocks of
``block_size`` bytes (``ceil(carve_size / block_size)`` of them, all full but the last),
then sends blocks 0..n-1. A host may be an attacker's machine, so the announcement is
checked against the server's cap (``max_carve``, which also bounds what one host's
unfinished carves announce together) and the request body limit, and the blocks against
the announcement: the bytes stored never exceed ``carve_size``. A carve
whose blocks stop coming is expired by the server's housekeeping after
``carve_timeout`` seconds, and its blocks are deleted.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from fleetctl.errors import BadRequest
from fleetctl.server.node_service import lock_host
from fleetctl.settings import Settings
from storage import carves as carve_store
from storage.carves import Carve

log = logging.getLogger("fleetctl.server")

# Room a carve/block body needs besides the block's base64: keys, block id, session and
# request ids (osqueryd's are a few dozen characters each).
BLOCK_ENVELOPE = 1024
MAX_ID_CHARS = 255  # carve_id and request_id columns
INT32_MAX = 2**31 - 1  # block_count and block_size columns
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def max_block_size(max_body: int) -> int:
    """The largest block whose ``carve/block`` request (base64 in JSON) fits a body of
    ``max_body`` bytes: a larger announced block could never be delivered."""
    return max(0, (max_body - BLOCK_ENVELOPE) // 4 * 3)


def _count(body: Mapping[str, Any], key: str) -> int:
    """A non-negative integer field; older osqueryd sends numbers as strings."""
    value = body.get(key)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"{key!r} must be a non-negative integer")
    return value


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_ID_CHARS or not text.isprintable():
        raise BadRequest(f"{key!r} must be printable text of at most {MAX_ID_CHARS} characters")
    return text


def begin(
    session: Session, host_id: int, body: Mapping[str, Any], now: int, settings: Settings
) -> str:
    """Open a carve session after checking its announced sizes; its session id."""
    block_count = _count(body, "block_count")
    block_size = _count(body, "block_size")
    carve_size = _count(body, "carve_size")
    if carve_size > settings.max_carve:
        raise BadRequest(
            f"carve of {carve_size} bytes exceeds the server's {settings.max_carve}-byte limit"
        )
    lock_host(session, host_id)  # one begin at a time per host: the sum below holds
    pending = carve_store.unfinished_bytes(session, host_id)
    if pending + carve_size > settings.max_carve:
        raise BadRequest(
            f"this host's unfinished carves already announce {pending} bytes; with this one"
            f" they would exceed the server's {settings.max_carve}-byte limit"
        )
    largest = min(max_block_size(settings.max_body), INT32_MAX)
    if not 0 < block_size <= largest:
        raise BadRequest(f"block_size must be 1..{largest} bytes (a block must fit a request)")
    total = block_count * block_size
    if not (0 < block_count <= INT32_MAX and carve_size <= total <= carve_size + block_size):
        raise BadRequest(
            f"{block_count} blocks of {block_size} bytes do not fit a carve of {carve_size} "
            "bytes: block_count must be ceil(carve_size / block_size)"
        )
    session_id = secrets.token_urlsafe(24)
    carve_store.create_carve(
        session,
        host_id=host_id,
        session_id=session_id,
        carve_id=_text(body, "carve_id"),
        request_id=_text(body, "request_id"),
        block_count=block_count,
        block_size=block_size,
        carve_size=carve_size,
        now=now,
    )
    return session_id


def _block_data(body: Mapping[str, Any], block_size: int) -> bytes:
    data = body.get("data")
    if not isinstance(data, str):
        raise BadRequest("'data' must be a base64 string")
    if len(data) > 4 * ((block_size + 2) // 3):  # refused before decoding it
        raise BadRequest(f"block larger than the announced block_size of {block_size} bytes")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"'data' is not valid base64: {exc}") from exc
    if len(raw) > block_size:
        raise BadRequest(f"block larger than the announced block_size of {block_size} bytes")
    return raw


def add_block(session: Session, body: Mapping[str, Any], now: int) -> Carve:
    """Store one block; assemble the archive when the last one arrives.

    A resent block (osqueryd retries when a reply is lost) is accepted and changes
    nothing; a block that would take the carve past its ``carve_size`` is refused.
    """
    session_id = body.get("session_id")
    if not isinstance(session_id, str):
        raise BadRequest("'session_id' must be a string")
    carve = carve_store.locked_carve(session, session_id)
    if carve is None:
        raise BadRequest("unknown carve session_id")
    if carve.expired_at is not None:
        raise BadRequest("carve expired: no block came for too long; its blocks were deleted")
    block_id = _count(body, "block_id")
    if block_id >= carve.block_count:
        raise BadRequest(f"block_id {block_id} out of range 0..{carve.block_count - 1}")
    raw = _block_data(body, carve.block_size)
    if carve.completed_at is not None or carve_store.has_block(session, carve.id, block_id):
        return carve  # a resent block: already stored
    if carve.bytes_received + len(raw) > carve.carve_size:
        raise BadRequest(
            f"block {block_id} would take the carve past its declared "
            f"carve_size of {carve.carve_size} bytes"
        )
    last = carve.blocks_received + 1 == carve.block_count
    if last and carve.bytes_received + len(raw) != carve.carve_size:
        raise BadRequest(
            f"the carve's blocks hold {carve.bytes_received + len(raw)} bytes, "
            f"not the declared carve_size of {carve.carve_size}"
        )
    carve_store.add_block(session, carve, block_id, raw, now)
    if last:
        archive = carve_store.archive_of(session, carve.id)
        compression = "zstd" if archive.startswith(ZSTD_MAGIC) else "none"
        carve_store.complete(session, carve, archive, compression, now)
    return carve


def expire_stalled(session: Session, now: int, timeout: int) -> int:
    """Expire carves with no block for ``timeout`` seconds and delete their blocks."""
    expired = carve_store.expire_stalled(session, now, timeout)
    if expired:
        log.warning("expired %d carve(s) with no block for %d s", len(expired), timeout)
    return len(expired)
