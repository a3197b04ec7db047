"""Enrollment: the host's identity, its details, and the node key osqueryd keeps.

``osquery/remote/enroll/enroll.cpp``: the key is cached (here in the state file, as
osqueryd caches it in RocksDB) and obtained lazily: the first request that needs one
enrolls, synchronously, with ``--tls_enroll_max_attempts`` tries ``min(step^2,
--tls_enroll_max_interval)`` seconds apart. ``node_invalid`` on any later request clears
the key, so the next request, whatever plugin sends it, enrolls again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetctl.agent.engines import QueryEngine
from fleetctl.agent.errors import EngineError, EnrollFailed, RequestFailed
from fleetctl.agent.flags import Flags
from fleetctl.agent.state import StateDB
from fleetctl.agent.transport import Transport
from fleetctl.engine import string_rows
from fleetctl.tables.runtime import LINUX_PLATFORM_MASK

log = logging.getLogger("fleetctl.agent")

DETAIL_TABLES = ("os_version", "osquery_info", "system_info", "platform_info")
IDENTIFIER_MODES = ("hostname", "uuid", "instance", "ephemeral", "specified")


def first_row(engine: QueryEngine, table: str) -> dict[str, str]:
    """The first row of ``table`` with every value a string; {} if it has none or fails."""
    try:
        result = engine.query(f"SELECT * FROM {table}")
    except EngineError:
        return {}
    return string_rows(result.rows[:1], result.columns)[0] if result.rows else {}


def host_details(engine: QueryEngine) -> dict[str, dict[str, str]]:
    """What osqueryd sends as ``host_details`` when it enrolls."""
    return {table: first_row(engine, table) for table in DETAIL_TABLES}


class HostIdentity:
    """``--host_identifier``: hostname, uuid, instance, ephemeral or a specified name."""

    def __init__(self, engine: QueryEngine, mode: str, specified: str = "") -> None:
        self._engine = engine
        self.mode = mode
        self._specified = specified
        self._ephemeral = str(uuid.uuid4())
        self._cached: str | None = None

    def __call__(self) -> str:
        if self._cached is None:
            self._cached = self._resolve()
        return self._cached

    def _resolve(self) -> str:
        if self.mode == "ephemeral":
            return self._ephemeral
        if self.mode == "specified":
            return self._specified
        if self.mode == "instance":
            return first_row(self._engine, "osquery_info").get("instance_id", "")
        system = first_row(self._engine, "system_info")
        if self.mode == "uuid":
            return system.get("uuid", "")
        return system.get("hostname", "")


@dataclass(frozen=True)
class Endpoints:
    """Paths of the server's osquery API (osqueryd's ``--*_endpoint`` flags)."""

    enroll: str = "/api/v1/osquery/enroll"
    config: str = "/api/v1/osquery/config"
    log: str = "/api/v1/osquery/log"
    distributed_read: str = "/api/v1/osquery/distributed/read"
    distributed_write: str = "/api/v1/osquery/distributed/write"


class NodeKeys:
    """The node key: cached on disk, obtained lazily, cleared on ``node_invalid``."""

    KEY = "nodeKey"

    def __init__(
        self,
        state: StateDB,
        transport: Transport,
        *,
        endpoints: Endpoints,
        flags: Flags,
        secret_path: Path,
        identity: Callable[[], str],
        details: Callable[[], dict[str, Any]],
        stop: threading.Event,
    ) -> None:
        self._state = state
        self._transport = transport
        self._endpoints = endpoints
        self._flags = flags
        self._secret_path = secret_path
        self._identity = identity
        self._details = details
        self._stop = stop
        self._lock = threading.Lock()
        self.enrollments = 0

    def current(self) -> str | None:
        return self._state.get(self.KEY)

    def get(self) -> str:
        """The node key, enrolling first if there is none (one thread enrolls at a time)."""
        key = self.current()
        if key:
            return key
        with self._lock:
            key = self.current()
            if key:
                return key
            key = self._enroll_with_retries()
            self._state.put(self.KEY, key)
            self._state.put("nodeKeyTime", str(int(time.time())))
            return key

    def clear(self, key: str) -> None:
        """Forget ``key`` (unless another thread already replaced it)."""
        with self._lock:
            if self.current() == key:
                self._state.delete(self.KEY)

    def _enroll_with_retries(self) -> str:
        attempts = self._flags.get_int("tls_enroll_max_attempts")
        step = 0
        while True:
            step += 1
            try:
                return self._enroll_once()
            except RequestFailed as exc:
                log.warning(
                    "Failed enrollment request to %s (%s) retrying...", self._transport.server, exc
                )
                if attempts and step >= attempts:
                    raise EnrollFailed(f"enrollment failed after {step} attempts: {exc}") from exc
            pause = min(step * step, self._flags.get_int("tls_enroll_max_interval"))
            if self._stop.wait(pause):
                raise EnrollFailed("stopped while enrolling")

    def _enroll_once(self) -> str:
        try:
            secret = self._secret_path.read_text().strip()
        except OSError as exc:
            raise RequestFailed(f"cannot read the enroll secret: {exc}") from exc
        body = {
            "enroll_secret": secret,
            "host_identifier": self._identity(),
            "platform_type": str(LINUX_PLATFORM_MASK),
            "host_details": self._details(),
        }
        # osqueryd ignores node_invalid in the enroll answer: only the key matters.
        answer = self._transport.post(self._endpoints.enroll, body, check_node_invalid=False)
        key = answer.get("node_key", answer.get("id"))
        if not isinstance(key, str) or not key:
            raise RequestFailed("enroll answer carries no node_key")
        self.enrollments += 1
        log.info("enrolled as %s", self._identity())
        return key
