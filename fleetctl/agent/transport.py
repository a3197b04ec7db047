"""POST JSON to the server the way osqueryd's TLS transport does.

``osquery/remote/transports/tls.cpp`` and ``TLSRequestHelper::go``: every call is a POST
with a JSON body, the server CA is pinned (``--tls_server_certs``), the timeout is 16 s
and at most 10 redirects are followed. The HTTP status is *not* inspected: an empty body
is success (``{}``), a body that is not a JSON object is failure, ``node_invalid: true``
is failure plus re-enrollment, a top-level ``error`` is failure. A 500 with ``{}`` is
success, exactly as for osqueryd.

``transport`` lets tests drive the server app in-process (an ``httpx.BaseTransport``).
"""

from __future__ import annotations

import gzip
import ssl
from typing import Any

import httpx
import orjson

from fleetctl.agent.errors import NodeInvalid, RequestFailed

TIMEOUT_SECONDS = 16.0
MAX_REDIRECTS = 10


def ssl_context(ca: str | None) -> ssl.SSLContext:
    """Trust only ``ca`` when given (osqueryd's pinning), else the system store; TLS >= 1.2."""
    context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def parse_answer(body: bytes, *, check_node_invalid: bool = True) -> dict[str, Any]:
    """The answer's JSON object, or RequestFailed/NodeInvalid by osqueryd's rules."""
    if not body.strip():
        return {}
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestFailed(f"answer is not JSON: {exc}") from exc
    if not isinstance(answer, dict):
        raise RequestFailed(f"answer is a JSON {type(answer).__name__}, not an object")
    if check_node_invalid and answer.get("node_invalid") is True:
        raise NodeInvalid(str(answer.get("error") or "node_invalid"))
    if "error" in answer:
        raise RequestFailed(f"server error: {answer['error']}")
    return answer


class Transport:
    """One keep-alive HTTPS client for every plugin of one agent."""

    def __init__(
        self,
        server: str,
        *,
        ca: str | None = None,
        user_agent: str = "osquery/5.23.0",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        self._http = httpx.Client(
            base_url=self.server,
            verify=ssl_context(ca),
            timeout=TIMEOUT_SECONDS,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            transport=transport,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": user_agent,
            },
        )

    def post(
        self,
        path: str,
        body: dict[str, Any] | bytes,
        *,
        node_key: str | None = None,
        compress: bool = False,
        check_node_invalid: bool = True,
    ) -> dict[str, Any]:
        """POST ``body`` (a dict, or JSON already serialised) and apply osqueryd's rules."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        headers = {}
        if node_key:
            headers["Authorization"] = f"NodeKey {node_key}"
        if compress:
            raw = gzip.compress(raw, compresslevel=9)
            headers["Content-Encoding"] = "gzip"
        try:
            response = self._http.post(path, content=raw, headers=headers)
        except httpx.HTTPError as exc:
            raise RequestFailed(f"{path}: {type(exc).__name__}: {exc}") from exc
        return parse_answer(response.content, check_node_invalid=check_node_invalid)

    def close(self) -> None:
        self._http.close()
