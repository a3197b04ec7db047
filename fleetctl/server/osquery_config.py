"""The config osqueryd receives from the ``config`` endpoint.

``options`` pins the settings the server's parsing relies on (pack delimiter, batch
size); ``decorators`` attach the host uuid and hostname to every result line; ``packs``
holds exactly the packs, and inside them the queries, that target this host.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fleetctl.settings import Settings
from fleetctl.targeting import packs_for_host, targeted
from storage import labels as label_store
from storage import packs as pack_store

PACK_DELIMITER = "_"
LOGGER_TLS_MAX_LINES = 1024


def config_for(session: Session, host_id: int, family: str, settings: Settings) -> dict[str, Any]:
    """Config for one host of platform ``family``."""
    targets = [targeted(stored) for stored in pack_store.current_packs(session)]
    host_labels = label_store.host_label_names(session, host_id)
    packs = packs_for_host(targets, family, host_labels)
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
        "packs": {pack.name: _served(pack.to_osquery()) for pack in packs},
    }


def _served(pack: dict[str, Any]) -> dict[str, Any]:
    """Drop metadata osqueryd ignores (``description``, ``value``) to keep configs small."""
    for query in pack.get("queries", {}).values():
        query.pop("description", None)
        query.pop("value", None)
    return pack
