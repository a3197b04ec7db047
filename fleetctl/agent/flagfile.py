"""Read an osqueryd flags file (``--flagfile``), such as the one ``fleetctl serve`` writes.

The same file that points osqueryd at the server points the agent at it: the server
(``--tls_hostname``), its CA (``--tls_server_certs``), the secret, the endpoint paths
and every flag in ``fleetctl.agent.flags`` are taken from it; other flags are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.agent.enroll import Endpoints
from fleetctl.agent.flags import BY_NAME

_ENDPOINTS = {
    "enroll_tls_endpoint": "enroll",
    "config_tls_endpoint": "config",
    "logger_tls_endpoint": "log",
    "distributed_tls_read_endpoint": "distributed_read",
    "distributed_tls_write_endpoint": "distributed_write",
}


@dataclass
class FlagFile:
    server: str | None = None
    ca: str | None = None
    enroll_secret_path: str | None = None
    endpoints: Endpoints = field(default_factory=Endpoints)
    flags: dict[str, Any] = field(default_factory=dict)
    distributed: bool | None = None


def parse_flags(text: str) -> dict[str, str]:
    """``--name=value`` lines (``--name value`` and bare ``--name`` too); ``#`` comments."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or not line.startswith("--"):
            continue
        name, sep, value = line[2:].partition("=")
        if not sep:
            name, _, value = line[2:].partition(" ")
            value = value.strip() or "true"
        out[name.strip()] = value.strip()
    return out


def read_flagfile(path: Path) -> FlagFile:
    values = parse_flags(path.read_text())
    result = FlagFile()
    if "tls_hostname" in values:
        result.server = "https://" + values["tls_hostname"]
    result.ca = values.get("tls_server_certs")
    result.enroll_secret_path = values.get("enroll_secret_path")
    paths = {attr: values[flag] for flag, attr in _ENDPOINTS.items() if flag in values}
    result.endpoints = Endpoints(**paths)
    if "disable_distributed" in values:
        result.distributed = values["disable_distributed"].lower() not in ("true", "1")
    result.flags = {name: value for name, value in values.items() if name in BY_NAME}
    return result
