"""JSON responses shaped for osqueryd, which reads bodies and ignores status codes.

Every answer to an osquery endpoint is a JSON object with a boolean ``node_invalid``;
failures carry a top-level ``error`` so that osqueryd treats the request as failed and
keeps (and later resends) what it sent.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def node_ok(payload: dict[str, Any] | None = None) -> Response:
    body = {"node_invalid": False}
    if payload:
        body.update(payload)
    return json_response(body)


def node_error(message: str, status: int = 400) -> Response:
    return json_response({"error": message, "node_invalid": False}, status)


def node_invalid(message: str = "unknown node key; enroll again") -> Response:
    return json_response({"error": message, "node_invalid": True}, 401)
