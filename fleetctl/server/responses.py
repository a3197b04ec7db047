"""JSON responses, and the app-wide answers to what no endpoint handled.

Every answer to an osquery endpoint is a JSON object with a boolean ``node_invalid``;
failures carry a top-level ``error`` so that osqueryd treats the request as failed and
keeps (and later resends) what it sent. Every admin failure is ``{"error": ...}``.

``exception_handlers`` keeps that true for everything else: an unknown route or method,
a database error, a client gone mid-body, a bug. None of them may answer Starlette's or
uvicorn's plain-text pages.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

log = logging.getLogger("fleetctl.server")


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(payload), status_code=status, headers=headers, media_type="application/json"
    )


def node_ok(payload: dict[str, Any] | None = None) -> Response:
    body = {"node_invalid": False}
    if payload:
        body.update(payload)
    return json_response(body)


def node_error(message: str, status: int = 400) -> Response:
    return json_response({"error": message, "node_invalid": False}, status)


def node_invalid(message: str = "unknown node key; enroll again") -> Response:
    return json_response({"error": message, "node_invalid": True}, 401)


def exception_handlers(node_prefix: str) -> dict[Any, ExceptionHandler]:
    """Starlette ``exception_handlers`` answering JSON, shaped for osqueryd under
    ``node_prefix``.

    A database error caused by input (``DataError``: out of range, too long, NUL) is the
    client's: 400, logged as one line. ``IntegrityError`` is a conflict with stored data
    (409). Other database errors and anything unexpected are the server's: their
    traceback is logged once (Starlette re-raises unexpected exceptions after answering,
    and uvicorn logs them; this module logs the database ones it handles itself).
    """

    def answer(
        request: Request, message: str, status: int, headers: Mapping[str, str] | None = None
    ) -> Response:
        if request.url.path.startswith(node_prefix):
            return json_response({"error": message, "node_invalid": False}, status, headers)
        return json_response({"error": message}, status, headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        messages = {
            404: "no such endpoint",
            405: f"method {request.method} is not allowed here",
        }
        message = messages.get(exc.status_code, exc.detail)
        return answer(request, message, exc.status_code, exc.headers)

    async def database_error(request: Request, exc: Exception) -> Response:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        where = _where(request)
        if isinstance(exc, DataError):
            log.warning("%s: refused by the database: %s", where, reason)
            return answer(request, f"a value does not fit the store: {reason}", 400)
        if isinstance(exc, IntegrityError):
            log.warning("%s: conflict: %s", where, reason)
            return answer(request, "the request conflicts with stored data", 409)
        log.error("%s failed", where, exc_info=exc)
        if isinstance(exc, OperationalError):
            return answer(request, "the database is unavailable; retry later", 503)
        return answer(request, "internal server error; nothing was stored", 500)

    async def client_gone(request: Request, exc: Exception) -> Response:
        log.info("%s: client disconnected mid-request", _where(request))
        return answer(request, "client disconnected", 400)  # nobody is left to read it

    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after sending this; uvicorn logs the traceback and closes
        # the connection, so tell the client not to reuse it.
        return answer(request, "internal server error", 500, {"connection": "close"})

    return {
        HTTPException: http_error,
        SQLAlchemyError: database_error,
        ClientDisconnect: client_gone,
        Exception: unexpected,
    }


def _where(request: Request) -> str:
    """Method and path for a log line; a hostile path is cut short."""
    path = request.url.path
    return f"{request.method} {path if len(path) <= 200 else path[:200] + '...'}"
