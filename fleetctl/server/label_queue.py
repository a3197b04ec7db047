"""Which dynamic-label queries each host should answer next, decided in memory.

Check-ins (``distributed/read``) must not cost a database round trip, so label
definitions and the time each host last answered each label are held here, reloaded
from the database every few seconds. A host gets a label's query when it never
answered it, when the label changed since, or when the answer is older than
``refresh`` seconds; a query handed out is not handed out again for ``resend`` seconds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from fleetctl.packs.model import parse_platforms
from fleetctl.server.query_ids import LABEL_QUERIES
from storage.labels import DynamicLabel

label_query_id = LABEL_QUERIES.encode
parse_label_query_id = LABEL_QUERIES.decode


def covers(label: DynamicLabel, family: str) -> bool:
    """Whether the label's platform (none: every platform) includes this host's family."""
    platforms = parse_platforms(label.platform) if label.platform else None
    return platforms is None or family in platforms


def is_due(label: DynamicLabel, answered: int | None, now: int, refresh: float) -> bool:
    """Whether a host that last answered the label at ``answered`` should answer again:
    never answered, the label changed since, or the answer is older than ``refresh``."""
    return answered is None or answered < label.updated_at or now - answered >= refresh


@dataclass
class LabelQueue:
    refresh: float = 600.0
    resend: float = 60.0
    reload_every: float = 10.0
    labels: list[DynamicLabel] = field(default_factory=list)
    evaluated: dict[tuple[int, int], int] = field(default_factory=dict)
    _sent: dict[tuple[int, int], float] = field(default_factory=dict)
    loaded_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(self, labels: list[DynamicLabel], evaluated: dict[tuple[int, int], int]) -> None:
        with self._lock:
            self.labels = labels
            self.evaluated = evaluated
            self.loaded_at = time.monotonic()

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at > self.reload_every

    def due(self, host_id: int, family: str, now: int) -> dict[str, str]:
        """Label queries this host should run now (usually none)."""
        out: dict[str, str] = {}
        mono = time.monotonic()
        for label in self.labels:
            if not covers(label, family):
                continue
            key = (host_id, label.id)
            if not is_due(label, self.evaluated.get(key), now, self.refresh):
                continue
            if mono - self._sent.get(key, -1e9) < self.resend:
                continue
            self._sent[key] = mono
            out[label_query_id(label.id)] = label.query
        return out

    def accepts(
        self, host_id: int, family: str, label: DynamicLabel, answered: int | None, now: int
    ) -> bool:
        """Whether this host's answer to ``label`` may change its membership.

        Only for a label whose platform covers the host, and that this replica handed to
        it, or that was due for it (another replica sharing the store may have handed it
        out): a host never puts itself into a label it was not asked about.
        """
        if not covers(label, family):
            return False
        return (host_id, label.id) in self._sent or is_due(label, answered, now, self.refresh)

    def answered(self, host_id: int, label_id: int, now: int) -> None:
        self.evaluated[(host_id, label_id)] = now
        self._sent.pop((host_id, label_id), None)
