"""Differential detection: which execution paths are new on a host or on the fleet.

``Detector.detect(paths, now)`` compares each path key with what the host and the fleet
have shown before. A key is *new on the host* when that host never showed it, *new on the
fleet* when no host did; either counts once the host (or the fleet) is past its learning
window, or has an explicit baseline (``Detector.learn`` or the baseline file's ``learned``
keys). New paths are scored (``scoring.score_path``) and those at ``min_severity`` or above
become findings. Every path seen, alerting or not, becomes known, so a key alerts once;
later sightings of a key that did alert come back as the same finding (same ``id``,
``is_new`` False, fresh ``last_seen``) for the caller to update.

No storage here: all memory is the ``DetectionState`` passed in, which the caller persists
(``to_dict``/``from_dict`` give JSON-ready data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from fleetctl.detection.baseline import Baseline
from fleetctl.detection.catalog import INTERPRETER, classify
from fleetctl.detection.evidence import Evidence
from fleetctl.detection.paths import ExecutionPath
from fleetctl.detection.scoring import (
    Prevalence,
    Reason,
    Score,
    score_path,
    severity_rank,
)
from fleetctl.detection.state import DetectionState, FindingRecord, HostState

DEFAULT_LEARNING_WINDOW = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Finding:
    """A new (or again seen) IPC-spawned execution path worth an analyst's look."""

    id: str
    host: str
    key: str
    pid: int
    pids: tuple[int, ...]
    parent: str
    child: str
    severity: str
    score: int
    reasons: tuple[Reason, ...]
    evidence: Evidence
    first_seen: float
    last_seen: float
    new_on_host: bool
    new_on_fleet: bool
    prevalence: Prevalence
    is_new: bool = True

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "host": self.host,
            "key": self.key,
            "pid": self.pid,
            "pids": list(self.pids),
            "parent": self.parent,
            "child": self.child,
            "severity": self.severity,
            "score": self.score,
            "reasons": [{"code": r.code, "points": r.points, "text": r.text} for r in self.reasons],
            "evidence": self.evidence.to_dict(),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "new_on_host": self.new_on_host,
            "new_on_fleet": self.new_on_fleet,
            "prevalence": {
                "hosts_with_key": self.prevalence.hosts_with_key,
                "hosts_total": self.prevalence.hosts_total,
                "rarity": round(self.prevalence.rarity, 4),
            },
            "is_new": self.is_new,
        }


def finding_id(host: str, key: str) -> str:
    """Stable id of the finding for ``key`` on ``host`` (what storage dedups on)."""
    return hashlib.sha256(f"{host}\0{key}".encode()).hexdigest()[:20]


def _parent_name(path: ExecutionPath) -> str | None:
    """The parent as the "app" whose children are remembered: an interpreter is named
    with what it runs (``python3.11 http.server``, ``python3.11 pytest``), so one python
    app starting shells does not make every python app's shells expected."""
    if path.parent is None:
        return None
    return app_name(
        path.parent.basename, path.parent.names, path.parent.cmdline, path.platform or "posix"
    )


def app_name(basename: str, names: tuple[str, ...], cmdline: str, platform: str) -> str:
    if classify(names, platform) != INTERPRETER:
        return basename
    args = cmdline.split()[1:]
    for i, arg in enumerate(args):
        if arg == "-m" and i + 1 < len(args):
            return f"{basename} {args[i + 1]}"
        if arg in ("-c", "-e", "-E", "--eval"):
            return f"{basename} {arg}"
        if not arg.startswith("-"):
            return f"{basename} {arg.rsplit('/', 1)[-1]}"
    return basename


class Detector:
    """New-path detection over a caller-owned ``DetectionState``."""

    def __init__(
        self,
        baseline: Baseline | None = None,
        state: DetectionState | None = None,
        *,
        learning_window: float = DEFAULT_LEARNING_WINDOW,
        min_severity: str = "low",
    ) -> None:
        self.baseline = baseline if baseline is not None else Baseline.default()
        self.state = state if state is not None else DetectionState()
        self.learning_window = learning_window
        self.min_rank = severity_rank(min_severity)

    # -- learning --------------------------------------------------------------------

    def learn(self, paths: Iterable[ExecutionPath], now: float) -> int:
        """Accept paths as known (an explicit baseline); returns how many keys were new."""
        before = sum(len(h.keys) for h in self.state.hosts.values())
        for path in paths:
            host = self._host(path.host, now)
            host.baselined = True
            self.state.fleet_baselined = True
            self._record(path, path.path_key(), now)
        return sum(len(h.keys) for h in self.state.hosts.values()) - before

    # -- detection -------------------------------------------------------------------

    def detect(self, paths: Iterable[ExecutionPath], now: float) -> list[Finding]:
        """Findings for new paths (and again-seen earlier findings), most severe first."""
        groups: dict[tuple[str, str], list[ExecutionPath]] = {}
        for path in paths:
            groups.setdefault((path.host, path.path_key()), []).append(path)
        for host in {h for h, _ in groups}:
            self._host(host, now)
        findings = [
            f
            for (host, key), group in groups.items()
            if (f := self._judge(host, key, group, now)) is not None
        ]
        for (_, key), group in groups.items():
            for path in group:
                self._record(path, key, now)
        findings.sort(key=lambda f: (-f.score, -f.prevalence.rarity, f.host, f.key))
        return findings

    def _judge(self, host: str, key: str, group: list[ExecutionPath], now: float) -> Finding | None:
        state, learned = self.state, self.baseline.learned
        host_state = state.hosts[host]
        fid = finding_id(host, key)
        earlier = state.findings.get(fid)
        new_on_host = key not in host_state.keys and not learned.knows(host, key)
        new_on_fleet = (
            key not in state.fleet
            and key not in learned.fleet
            and not any(key in keys for keys in learned.hosts.values())
        )
        host_ready = (
            host_state.baselined
            or host in learned.hosts
            or now - host_state.first_seen >= self.learning_window
        )
        fleet_ready = (
            state.fleet_baselined
            or bool(learned.fleet)
            or now - (state.started_at or now) >= self.learning_window
        )
        if not ((new_on_host and host_ready) or (new_on_fleet and fleet_ready)) and earlier is None:
            return None
        with_key = state.fleet[key].hosts | {host} if key in state.fleet else {host}
        prevalence = Prevalence(len(with_key), len(state.hosts))
        scored = [
            (
                score_path(
                    p, self.baseline, prevalence=prevalence, parent_history=self._history(p)
                ),
                p,
            )
            for p in group
        ]
        best, path = max(scored, key=lambda item: item[0].score)
        if earlier is None and severity_rank(best.severity) < self.min_rank:
            return None
        first_seen = earlier.first_seen if earlier else now
        state.findings[fid] = FindingRecord(
            id=fid,
            host=host,
            key=key,
            first_seen=first_seen,
            last_seen=now,
            severity=best.severity,
            score=best.score,
        )
        return _finding(
            fid,
            key,
            path,
            group,
            best,
            prevalence,
            first_seen,
            now,
            new_on_host,
            new_on_fleet,
            is_new=earlier is None,
        )

    # -- state -----------------------------------------------------------------------

    def _host(self, host: str, now: float) -> HostState:
        if self.state.started_at is None:
            self.state.started_at = now
        return self.state.hosts.setdefault(host, HostState(first_seen=now))

    def _history(self, path: ExecutionPath) -> set[str] | None:
        name = _parent_name(path)
        return self.state.parents.get(name) if name else None

    def _record(self, path: ExecutionPath, key: str, now: float) -> None:
        self.state.see(path.host, key, now)
        name = _parent_name(path)
        if name:
            self.state.parents.setdefault(name, set()).add(path.child.basename)
            self.state.hosts[path.host].parents.setdefault(name, set()).add(path.child.basename)


def _finding(
    fid: str,
    key: str,
    path: ExecutionPath,
    group: list[ExecutionPath],
    score: Score,
    prevalence: Prevalence,
    first_seen: float,
    now: float,
    new_on_host: bool,
    new_on_fleet: bool,
    *,
    is_new: bool,
) -> Finding:
    return Finding(
        id=fid,
        host=path.host,
        key=key,
        pid=path.child.pid,
        pids=tuple(sorted({p.child.pid for p in group})),
        parent=path.parent.basename if path.parent else "?",
        child=path.child.basename,
        severity=score.severity,
        score=score.score,
        reasons=score.reasons,
        evidence=Evidence.of(path),
        first_seen=first_seen,
        last_seen=now,
        new_on_host=new_on_host,
        new_on_fleet=new_on_fleet,
        prevalence=prevalence,
        is_new=is_new,
    )
