"""Which campaign queries each host should receive at its next check-in, in memory.

Check-ins must not cost a database round trip, so queued targets live here: added when
a campaign is created on this replica, and reloaded from the database every few seconds
so campaigns created on another replica (or before a restart) reach their hosts too. A
host that is offline when a campaign starts gets the query whenever it next checks in,
until the campaign expires.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from storage.campaigns import Pending

CAMPAIGN_PREFIX = "fleetctl_campaign_"


def campaign_query_id(campaign_id: int) -> str:
    return f"{CAMPAIGN_PREFIX}{campaign_id}"


def parse_campaign_query_id(query_id: str) -> int | None:
    if not query_id.startswith(CAMPAIGN_PREFIX):
        return None
    rest = query_id[len(CAMPAIGN_PREFIX) :]
    return int(rest) if rest.isdigit() else None


@dataclass
class CampaignQueue:
    reload_every: float = 3.0
    _by_host: dict[int, dict[int, Pending]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    loaded_at: float = 0.0

    def load(self, pending: list[Pending]) -> None:
        by_host: dict[int, dict[int, Pending]] = {}
        for item in pending:
            by_host.setdefault(item.host_id, {})[item.campaign_id] = item
        with self._lock:
            self._by_host = by_host
            self.loaded_at = time.monotonic()

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at > self.reload_every

    def add(self, items: list[Pending]) -> None:
        with self._lock:
            for item in items:
                self._by_host.setdefault(item.host_id, {})[item.campaign_id] = item

    def take(self, host_id: int, now: int) -> dict[int, str]:
        """campaign id -> SQL for this host (removed from the queue: it is being sent)."""
        if host_id not in self._by_host:
            return {}
        with self._lock:
            items = self._by_host.pop(host_id, {})
        return {cid: p.sql for cid, p in items.items() if p.expires_at > now}
