"""``DetectionState``: everything the detector remembers, as plain data the caller keeps.

Per host: when it was first seen, whether it has an explicit baseline, each path key's
first and last sighting, and which children each parent basename started. Fleet-wide:
the hosts behind each key (prevalence), the same parent history, and the findings raised
so far (for dedup). ``to_dict``/``from_dict`` round-trip through JSON so the storage layer
can keep it in a row, a file or a table of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetctl.detection.baseline import LearnedKeys

STATE_VERSION = 1


@dataclass
class Sighting:
    first_seen: float
    last_seen: float


@dataclass
class HostState:
    first_seen: float
    baselined: bool = False
    keys: dict[str, Sighting] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class FleetKey:
    """Where a path key was seen across the fleet: ``hosts`` by name, and ``others``
    more hosts counted without their names (what a store's aggregate gives)."""

    first_seen: float
    last_seen: float
    hosts: set[str] = field(default_factory=set)
    others: int = 0

    def hosts_with(self, host: str) -> int:
        """How many hosts have the key once ``host`` has it too."""
        return len(self.hosts | {host}) + self.others


@dataclass
class FindingRecord:
    id: str
    host: str
    key: str
    first_seen: float
    last_seen: float
    severity: str
    score: int


@dataclass
class DetectionState:
    started_at: float | None = None
    fleet_baselined: bool = False
    hosts: dict[str, HostState] = field(default_factory=dict)
    fleet: dict[str, FleetKey] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)
    findings: dict[str, FindingRecord] = field(default_factory=dict)

    def see(self, host: str, key: str, now: float) -> None:
        """Record a sighting of ``key`` on ``host`` (the host must exist)."""
        seen = self.hosts[host].keys.get(key)
        if seen is None:
            self.hosts[host].keys[key] = Sighting(now, now)
        else:
            seen.last_seen = max(seen.last_seen, now)
        fleet = self.fleet.get(key)
        if fleet is None:
            self.fleet[key] = FleetKey(now, now, {host})
        else:
            fleet.last_seen = max(fleet.last_seen, now)
            fleet.hosts.add(host)

    def learned_keys(self) -> LearnedKeys:
        """Every key seen so far, per host, for review into a baseline file's ``learned``."""
        return LearnedKeys(hosts={h: set(s.keys) for h, s in self.hosts.items()})

    # -- serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "started_at": self.started_at,
            "fleet_baselined": self.fleet_baselined,
            "hosts": {
                name: {
                    "first_seen": h.first_seen,
                    "baselined": h.baselined,
                    "keys": {k: [s.first_seen, s.last_seen] for k, s in h.keys.items()},
                    "parents": {p: sorted(c) for p, c in h.parents.items()},
                }
                for name, h in self.hosts.items()
            },
            "fleet": {
                k: {
                    "first_seen": f.first_seen,
                    "last_seen": f.last_seen,
                    "hosts": sorted(f.hosts),
                    "others": f.others,
                }
                for k, f in self.fleet.items()
            },
            "parents": {p: sorted(c) for p, c in self.parents.items()},
            "findings": {i: vars(r).copy() for i, r in self.findings.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DetectionState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported detection state version {data.get('version')!r}")
        return cls(
            started_at=data.get("started_at"),
            fleet_baselined=bool(data.get("fleet_baselined")),
            hosts={
                name: HostState(
                    first_seen=h["first_seen"],
                    baselined=h["baselined"],
                    keys={k: Sighting(*v) for k, v in h["keys"].items()},
                    parents={p: set(c) for p, c in h["parents"].items()},
                )
                for name, h in data.get("hosts", {}).items()
            },
            fleet={
                k: FleetKey(f["first_seen"], f["last_seen"], set(f["hosts"]), f.get("others", 0))
                for k, f in data.get("fleet", {}).items()
            },
            parents={p: set(c) for p, c in data.get("parents", {}).items()},
            findings={i: FindingRecord(**r) for i, r in data.get("findings", {}).items()},
        )
