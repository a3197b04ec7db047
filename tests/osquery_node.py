"""A test client that speaks to the server exactly as osqueryd's TLS plugins do.

POST bodies with the node key injected, log batches of at most 1,024 lines, optional
gzip (``--logger_tls_compress``), and status codes ignored in favour of the JSON body.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from fleetctl.cli.client import ssl_context

MAX_LINES = 1024


class OsqueryNode:
    def __init__(
        self,
        base_url: str,
        ca: str,
        secret: str,
        identifier: str,
        uuid: str,
        platform_type: str = "9",
    ) -> None:
        self.http = httpx.Client(base_url=base_url, verify=ssl_context(ca), timeout=30)
        self.secret = secret
        self.identifier = identifier
        self.uuid = uuid
        self.platform_type = platform_type
        self.node_key: str | None = None

    def host_details(self) -> dict[str, Any]:
        return {
            "os_version": {"name": "Rocky Linux", "version": "8.7", "platform": "rhel"},
            "osquery_info": {"version": "5.8.2", "build_platform": "linux"},
            "system_info": {"uuid": self.uuid, "hostname": self.identifier},
            "platform_info": {"vendor": "test"},
        }

    def post(self, path: str, body: dict[str, Any], *, compress: bool = False) -> dict[str, Any]:
        raw = orjson.dumps(body)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "osquery/5.8.2",
        }
        if compress:
            raw = gzip.compress(raw, compresslevel=9)
            headers["Content-Encoding"] = "gzip"
        response = self.http.post(f"/api/v1/osquery{path}", content=raw, headers=headers)
        parsed: dict[str, Any] = response.json()
        return parsed

    def enroll(self) -> dict[str, Any]:
        answer = self.post(
            "/enroll",
            {
                "enroll_secret": self.secret,
                "host_identifier": self.identifier,
                "platform_type": self.platform_type,
                "host_details": self.host_details(),
            },
        )
        self.node_key = answer.get("node_key")
        return answer

    def call(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.post(path, {"node_key": self.node_key, **(body or {})}, **kw)

    def log(
        self, log_type: str, lines: Sequence[Any], *, compress: bool = False
    ) -> list[dict[str, Any]]:
        """Send ``lines`` in osqueryd-sized batches; return each answer."""
        answers = []
        for i in range(0, len(lines), MAX_LINES):
            answers.append(
                self.call(
                    "/log",
                    {"log_type": log_type, "data": list(lines[i : i + MAX_LINES])},
                    compress=compress,
                )
            )
        return answers

    def close(self) -> None:
        self.http.close()
