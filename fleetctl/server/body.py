"""Read a request body with a hard size limit, inflating gzip as it streams.

osqueryd gzips log bodies with ``--logger_tls_compress``. The limit applies to the
decompressed size and is enforced while inflating, so a gzip bomb costs at most
``limit`` bytes of memory before it is refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request

from fleetctl.errors import BadRequest, PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the {limit}-byte limit")
    gzipped = request.headers.get("content-encoding", "").lower() in ("gzip", "x-gzip")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16) if gzipped else None
    out = bytearray()
    raw = 0
    async for chunk in request.stream():
        raw += len(chunk)
        if raw > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        if inflater is None:
            out += chunk
            continue
        try:
            out += inflater.decompress(chunk, limit + 1 - len(out))
            if inflater.unconsumed_tail or len(out) > limit:
                raise PayloadTooLarge(f"decompressed body exceeds the {limit}-byte limit")
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip: {exc}") from exc
    if inflater is not None:
        try:
            out += inflater.flush()
        except zlib.error as exc:
            raise BadRequest(f"body is not valid gzip: {exc}") from exc
        if not inflater.eof:
            raise BadRequest("body is not valid gzip: truncated stream")
        if len(out) > limit:
            raise PayloadTooLarge(f"decompressed body exceeds the {limit}-byte limit")
    return bytes(out)


async def read_json_object(
    request: Request, limit: int, fallback: Callable[[bytes], Any] | None = None
) -> dict[str, Any]:
    """The body as a JSON object; ``fallback`` reads what orjson refuses, if it can."""
    return parse_json_object(await read_body(request, limit), fallback)


def parse_json_object(raw: bytes, fallback: Callable[[bytes], Any] | None = None) -> dict[str, Any]:
    if not raw.strip():
        raise BadRequest("empty body: expected a JSON object")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if fallback is None:
            raise BadRequest(f"malformed JSON: {exc}") from exc
        try:
            obj = fallback(raw)
        except (ValueError, RecursionError):
            raise BadRequest(f"malformed JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise BadRequest(f"expected a JSON object, got {type(obj).__name__}")
    return obj
