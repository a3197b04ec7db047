"""Which campaign queries each host should receive at its next check-in, in memory.

Check-ins must not cost a database round trip, so queued targets live here: added when
a campaign is created on this replica, and reloaded from the database every few seconds
so campaigns created on another replica (or before a restart) reach their hosts too. A
host that is offline when a campaign starts gets the query whenever it next checks in,
until the campaign expires.

Handing a query to a host is recorded in memory too (``sent``) and written in one batch
by the server's housekeeping, not one transaction per check-in. If the server dies in
between, the target is still ``queued`` in the database and the host gets the query
again after the restart: delivery is at least once, and an answer overwrites the last.
An answer is stored only for a hand-out recorded here or in the database
(``distributed_answers``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from fleetctl.server.query_ids import CAMPAIGN_QUERIES
from storage.campaigns import Pending

campaign_query_id = CAMPAIGN_QUERIES.encode
parse_campaign_query_id = CAMPAIGN_QUERIES.decode


@dataclass
class CampaignQueue:
    reload_every: float = 3.0
    _by_host: dict[int, dict[int, Pending]] = field(default_factory=dict)
    _sent: dict[tuple[int, int], int] = field(default_factory=dict)
    _adds: int = 0
    _added: dict[int, int] = field(default_factory=dict)  # campaign id -> its add's number
    _lock: threading.Lock = field(default_factory=threading.Lock)
    loaded_at: float = 0.0

    def mark(self) -> int:
        """Call before reading the database for :meth:`load`."""
        with self._lock:
            return self._adds

    def load(self, pending: list[Pending], mark: int) -> None:
        """Replace the queue with the database's queued targets, read after ``mark``.

        Targets handed out since the read are left out (their ``sent`` is not written
        yet), and campaigns added after ``mark`` keep what this queue holds for them (the
        read may predate their commit). All under the lock, so no hand-out slips in
        between.
        """
        with self._lock:
            fresh = {cid for cid, number in self._added.items() if number > mark}
            by_host: dict[int, dict[int, Pending]] = {}
            for item in pending:
                if (item.campaign_id, item.host_id) not in self._sent:
                    by_host.setdefault(item.host_id, {})[item.campaign_id] = item
            for host_id, items in self._by_host.items():
                for cid, item in items.items():
                    if cid in fresh:
                        by_host.setdefault(host_id, {})[cid] = item
            self._by_host = by_host
            self._added = {cid: n for cid, n in self._added.items() if n > mark}
            self.loaded_at = time.monotonic()

    def __len__(self) -> int:
        """Queued (campaign, host) pairs not yet handed out."""
        with self._lock:
            return sum(len(items) for items in self._by_host.values())

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at > self.reload_every

    def add(self, items: list[Pending]) -> None:
        """Queue committed targets (a new campaign, or a host joining open hunts)."""
        with self._lock:
            self._adds += 1
            for item in items:
                self._by_host.setdefault(item.host_id, {})[item.campaign_id] = item
                self._added[item.campaign_id] = self._adds

    def forget(self, campaign_ids: Iterable[int] = (), host_id: int | None = None) -> None:
        """Stop handing out deleted campaigns, and anything to a deleted host."""
        gone = set(campaign_ids)
        with self._lock:
            if host_id is not None:
                self._by_host.pop(host_id, None)
            if gone:
                for items in self._by_host.values():
                    for cid in gone & items.keys():
                        del items[cid]
                for cid in gone:
                    self._added.pop(cid, None)

    def take(self, host_id: int, now: int) -> dict[int, str]:
        """campaign id -> SQL for this host (removed from the queue: it is being sent)."""
        if host_id not in self._by_host:
            return {}
        with self._lock:
            items = self._by_host.pop(host_id, {})
            taken = {cid: p.sql for cid, p in items.items() if p.expires_at > now}
            for cid in taken:
                self._sent[(cid, host_id)] = now
        return taken

    def handed_out(self, host_id: int, campaign_ids: Iterable[int]) -> set[int]:
        """Which of ``campaign_ids`` this queue handed to the host and has not yet written
        as sent: the store does not know of these hand-outs yet.

        Ask before reading the store: a hand-out leaves this record only after its write
        committed, so one of the two always has it.
        """
        with self._lock:
            return {cid for cid in campaign_ids if (cid, host_id) in self._sent}

    def sent(self) -> dict[tuple[int, int], int]:
        """(campaign id, host id) -> when it was handed out, not yet written."""
        with self._lock:
            return dict(self._sent)

    def written(self, items: dict[tuple[int, int], int]) -> None:
        """Forget hand-outs now stored (``items`` as returned by :meth:`sent`)."""
        with self._lock:
            for key, at in items.items():
                if self._sent.get(key) == at:
                    del self._sent[key]
