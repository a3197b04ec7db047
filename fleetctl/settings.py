"""Server settings: declared once as (name, default, help) and resolved into a frozen dataclass.

The home directory holds everything a single-machine deployment needs: the SQLite
database, the TLS material, the enroll secret and the client context file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

MiB = 1024 * 1024
# How long a new host (and a new fleet) only learns execution paths: the one value the
# server, the CLI and the detector (``fleetctl.detection``) default to.
DEFAULT_LEARNING_WINDOW = 24 * 3600

# (name, default, help) — the CLI options of `fleetctl serve` are generated from these.
SETTINGS: tuple[tuple[str, object, str], ...] = (
    ("listen", "127.0.0.1:8443", "HOST:PORT to serve osquery's TLS API and the admin API on."),
    ("db", None, "Database URL (default: sqlite:///<home>/fleet.db)."),
    ("max_body", 16 * MiB, "Largest request body accepted, after gzip decompression (bytes)."),
    ("node_key_ttl", 60.0, "Seconds a verified node key is trusted from memory."),
    ("config_refresh", 60, "Seconds between osqueryd config refreshes (printed flags)."),
    ("distributed_interval", 10, "Seconds between distributed reads (printed flags)."),
    (
        "learning_window",
        DEFAULT_LEARNING_WINDOW,
        "Seconds a new host (and the fleet) only learns paths.",
    ),
    ("max_carve", 512 * MiB, "Largest file carve a host may announce (bytes)."),
    ("carve_timeout", 3600, "Seconds without a block after which a carve is expired."),
    ("analyst_db", None, "PostgreSQL URL of a hand-made analyst role for `fleetctl sql`."),
    ("analyst_slots", 4, "Analyst SQL statements run at once (more answer 503 busy)."),
    ("analyst_timeout", 10.0, "Seconds one analyst SQL statement may run."),
    ("analyst_max_bytes", 16 * MiB, "Largest analyst SQL answer (bytes); more is truncated."),
    ("handshake_timeout", 10.0, "Seconds a client has to complete the TLS handshake."),
    (
        "header_timeout",
        10.0,
        "Seconds a client has to send a request's headers, from its first byte "
        "(from the handshake, for a connection's first request).",
    ),
    ("body_timeout", 30.0, "Seconds a request body may go without a byte arriving."),
    ("keep_alive_timeout", 30, "Seconds an idle keep-alive connection stays open."),
    (
        "max_connections_per_address",
        256,
        "Concurrent connections from one client address; more are closed at once "
        "(osqueryd holds one or two; NAT'd hosts share an address).",
    ),
)


def default_home() -> Path:
    env = os.environ.get("FLEETCTL_HOME")
    return Path(env) if env else Path(platformdirs.user_data_dir("fleetctl"))


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Settings:
    """Everything the server needs, resolved once and passed in explicitly."""

    home: Path = field(default_factory=default_home)
    listen: str = "127.0.0.1:8443"
    db: str | None = None
    max_body: int = 16 * MiB
    node_key_ttl: float = 60.0
    config_refresh: int = 60
    distributed_interval: int = 10
    learning_window: int = DEFAULT_LEARNING_WINDOW
    max_carve: int = 512 * MiB
    carve_timeout: int = 3600
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive_timeout: int = 30
    max_connections_per_address: int = 256
    tls_cert: Path | None = None
    tls_key: Path | None = None
    enroll_secrets: tuple[str, ...] = ()
    analyst_db: str | None = None
    analyst_slots: int = 4
    analyst_timeout: float = 10.0
    analyst_max_bytes: int = 16 * MiB

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.home / 'fleet.db'}"

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    @property
    def context_path(self) -> Path:
        return self.home / "context.json"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"
