"""The config osqueryd receives from the ``config`` endpoint.

``options`` pins the settings the server's parsing relies on (pack delimiter, batch
size); ``decorators`` attach the host uuid and hostname to every result line.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fleetctl.settings import Settings

PACK_DELIMITER = "_"
LOGGER_TLS_MAX_LINES = 1024


def config_for(session: Session, host_id: int, settings: Settings) -> dict[str, Any]:
    """Config for one host. Packs are added here once they target hosts."""
    return {
        "options": {
            "pack_delimiter": PACK_DELIMITER,
            "logger_tls_max_lines": LOGGER_TLS_MAX_LINES,
            "distributed_interval": settings.distributed_interval,
            "schedule_epoch": 0,
        },
        "decorators": {
            "load": [
                "SELECT uuid AS host_uuid FROM system_info;",
                "SELECT hostname AS hostname FROM system_info;",
            ]
        },
        "schedule": {},
        "packs": {},
    }
