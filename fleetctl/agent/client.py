"""The node-authenticated requests: config, log, distributed read and write.

Each injects ``node_key`` into the body (and, as osqueryd 5.23 does, sends it as
``Authorization: NodeKey``). ``node_invalid`` from any of them clears the key unless
``--disable_reenrollment``; the request fails and the caller keeps what it sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from fleetctl.agent.enroll import Endpoints, NodeKeys
from fleetctl.agent.errors import NodeInvalid
from fleetctl.agent.flags import Flags
from fleetctl.agent.transport import Transport


class RemoteClient:
    def __init__(
        self, transport: Transport, keys: NodeKeys, endpoints: Endpoints, flags: Flags
    ) -> None:
        self.transport = transport
        self.keys = keys
        self.endpoints = endpoints
        self._flags = flags

    def _post(self, path: str, build: Any, *, compress: bool = False) -> dict[str, Any]:
        """``build(node_key)`` makes the body; enrollment happens first when needed."""
        key = self.keys.get()
        try:
            return self.transport.post(path, build(key), node_key=key, compress=compress)
        except NodeInvalid:
            if not self._flags.get_bool("disable_reenrollment"):
                self.keys.clear(key)
            raise

    def config(self) -> dict[str, Any]:
        return self._post(self.endpoints.config, lambda key: {"node_key": key})

    def log(self, log_type: str, lines: Sequence[bytes]) -> None:
        """Send lines already serialised as JSON, without parsing them again."""

        def body(key: str) -> bytes:
            head = orjson.dumps({"node_key": key, "log_type": log_type})
            return head[:-1] + b',"data":[' + b",".join(lines) + b"]}"

        self._post(self.endpoints.log, body, compress=self._flags.get_bool("logger_tls_compress"))

    def distributed_read(self) -> dict[str, Any]:
        return self._post(self.endpoints.distributed_read, lambda key: {"node_key": key})

    def distributed_write(self, payload: dict[str, Any]) -> None:
        self._post(self.endpoints.distributed_write, lambda key: {"node_key": key, **payload})
