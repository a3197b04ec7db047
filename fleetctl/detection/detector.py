"""Differential detection: which execution paths are new on a host or on the fleet.

``Detector.detect(paths, now)`` compares each path key with what the host and the fleet
have shown before. A key is *new on the host* when that host never showed it, *new on the
fleet* when no host did; either counts once the host (or the fleet) is past its learning
window (``learning.learning_state``), or has an explicit baseline (``Detector.learn`` or
the baseline file's ``learned`` keys). New paths are scored (``scoring.score_path``) and
those at ``min_severity`` or above become findings.

Learning cannot be poisoned: a path whose intrinsic points alone (``Score.intrinsic``,
what holds whatever was seen before) reach medium is never learned silently. Seen while
its host learns, or during an explicit ``learn``, it becomes a finding marked
``seen_during_learning``; seen on a key learned earlier, it is a finding all the same.
Only the baseline's ``learned`` keys (an admin's decision: a suppressed finding, or
``learn(accept=...)``) quiet it.

Every path seen becomes known, so a key alerts once: later sightings of a key that did
alert come back as the same finding (same ``id``, ``is_new`` False, fresh ``last_seen``).
A finding carries one ``Occurrence`` per process on the path, identified by pid and start
time (pids are reused); which of them are new is for the caller, who keeps them, to tell.

No storage here: all memory is the ``DetectionState`` passed in, which the caller persists
(``to_dict``/``from_dict`` give JSON-ready data).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from fleetctl.detection.baseline import Baseline
from fleetctl.detection.catalog import INTERPRETER, classify
from fleetctl.detection.evidence import Evidence
from fleetctl.detection.learning import DEFAULT_LEARNING_WINDOW, learning_state
from fleetctl.detection.paths import ExecutionPath
from fleetctl.detection.scoring import (
    Prevalence,
    Reason,
    Score,
    score_path,
    severity_rank,
)
from fleetctl.detection.state import DetectionState, FindingRecord, HostState

# A path whose intrinsic points reach this severity is never learned silently.
NEVER_LEARNED = severity_rank("medium")


@dataclass(frozen=True)
class Occurrence:
    """One process on a finding's path: its identity (pid, start time), its own score and
    the evidence as it was when first seen."""

    pid: int
    start_time: int | None
    severity: str
    score: int
    reasons: tuple[Reason, ...]
    evidence: Evidence
    seen_during_learning: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start_time": self.start_time,
            "severity": self.severity,
            "score": self.score,
            "reasons": [r.to_dict() for r in self.reasons],
            "evidence": self.evidence.to_dict(),
            "seen_during_learning": self.seen_during_learning,
        }


@dataclass(frozen=True)
class Finding:
    """A new (or again seen) IPC-spawned execution path worth an analyst's look.

    ``pid``, ``score``, ``reasons`` and ``evidence`` are those of the most severe of
    ``occurrences`` (every process on the path in this run)."""

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
    occurrences: tuple[Occurrence, ...] = ()
    seen_during_learning: bool = False

    def context(self) -> dict[str, Any]:
        """What the path was when judged, shared by its occurrences of this run."""
        return {
            "id": self.id,
            "host": self.host,
            "key": self.key,
            "parent": self.parent,
            "child": self.child,
            "new_on_host": self.new_on_host,
            "new_on_fleet": self.new_on_fleet,
            "prevalence": {
                "hosts_with_key": self.prevalence.hosts_with_key,
                "hosts_total": self.prevalence.hosts_total,
                "rarity": round(self.prevalence.rarity, 4),
            },
        }

    def occurrence_document(self, occurrence: Occurrence) -> dict[str, Any]:
        """One occurrence as it is stored once and never rewritten."""
        return self.context() | occurrence.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return self.context() | {
            "pid": self.pid,
            "pids": list(self.pids),
            "severity": self.severity,
            "score": self.score,
            "reasons": [r.to_dict() for r in self.reasons],
            "evidence": self.evidence.to_dict(),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "is_new": self.is_new,
            "seen_during_learning": self.seen_during_learning,
            "occurrences": [o.to_dict() for o in self.occurrences],
        }


@dataclass(frozen=True)
class Learned:
    """What ``Detector.learn`` did with each (host, path key) it was shown."""

    keys: tuple[tuple[str, str], ...] = ()  # now known (quietly)
    new_keys: tuple[tuple[str, str], ...] = ()  # of those, the ones not known before
    refused: tuple[Finding, ...] = ()  # not learned: each is a finding
    accepted: tuple[tuple[str, str], ...] = ()  # would be refused, but named in ``accept``


def finding_id(host: str, key: str) -> str:
    """Stable id of the finding for ``key`` on ``host`` (what storage dedups on)."""
    return hashlib.sha256(f"{host}\0{key}".encode()).hexdigest()[:20]


def parent_app(path: ExecutionPath) -> str | None:
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


def consulted(paths: Iterable[ExecutionPath]) -> tuple[set[str], set[str]]:
    """The path keys and parent apps a judgement of ``paths`` consults: what a caller
    that keeps the state in a store loads of it for that judgement."""
    keys, apps = set(), set()
    for path in paths:
        keys.add(path.path_key())
        app = parent_app(path)
        if app:
            apps.add(app)
    return keys, apps


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

    def learn(
        self, paths: Iterable[ExecutionPath], now: float, *, accept: Collection[str] = ()
    ) -> Learned:
        """Accept paths as known (an explicit baseline for their hosts).

        A path that would be a finding even now (it looks like an attack on its own, or
        its key already is a finding) is refused: it comes back as a finding marked
        ``seen_during_learning``, unless its key is in ``accept``; the caller makes an
        accepted key a baseline entry, or it will be judged again."""
        groups = _grouped(paths)
        for host in {h for h, _ in groups}:
            self._host(host, now).baselined = True
            self.state.fleet_baselined = True
        keys, new_keys, refused, accepted = [], [], [], []
        for (host, key), group in groups.items():
            finding = self._judge(host, key, group, now, learning=True)
            if finding is None:
                keys.append((host, key))
                if key not in self.state.hosts[host].keys:
                    new_keys.append((host, key))
            elif key in accept:
                accepted.append((host, key))
            else:
                refused.append(self._remember(finding))
            for path in group:
                self._record(path, key, now)
        return Learned(tuple(keys), tuple(new_keys), tuple(_ranked(refused)), tuple(accepted))

    # -- detection -------------------------------------------------------------------

    def detect(
        self,
        paths: Iterable[ExecutionPath],
        now: float,
        *,
        unchanged: Iterable[ExecutionPath] = (),
    ) -> list[Finding]:
        """Findings for new paths (and again-seen earlier findings), most severe first.

        ``unchanged`` are those of ``paths`` (the same objects) judged before under their
        key and not changed since, but for ``observed_at``. A key
        known on the host that is no finding was no finding with them, and only what
        holds whatever was seen before can make it one now: so its unchanged paths are
        not scored again unless one of its other paths makes it a finding, and their
        parent pairs, recorded then, are not recorded again. The answer is what judging
        all of them as new would give, for a fraction of the cost when a key holds many
        processes and one of them changed (a worker pool)."""
        known = {id(p) for p in unchanged}
        groups = _grouped(paths)
        for host in {h for h, _ in groups}:
            self._host(host, now)
        findings = [
            self._remember(f)
            for (host, key), group in groups.items()
            if (f := self._judge(host, key, group, now, known=known)) is not None
        ]
        for (host, key), group in groups.items():
            fresh = [p for p in group if id(p) not in known]
            for path in fresh:
                self._record(path, key, now)
            if len(fresh) < len(group):
                self.state.see(host, key, now)
        return _ranked(findings)

    def _judge(
        self,
        host: str,
        key: str,
        group: list[ExecutionPath],
        now: float,
        *,
        learning: bool = False,
        known: Collection[int] = frozenset(),
    ) -> Finding | None:
        """The finding for ``key`` on ``host`` now, or None. ``learning``: an explicit
        learn, where only what may not be learned is a finding; ``known``: ids of the
        paths of ``group`` judged before unchanged (``detect``'s ``unchanged``)."""
        state, learned = self.state, self.baseline.learned
        if learned.knows(host, key):
            return None  # the admin accepted this path
        host_state = state.hosts[host]
        fid = finding_id(host, key)
        earlier = state.findings.get(fid)
        new_on_host = key not in host_state.keys
        new_on_fleet = key not in state.fleet and not any(
            key in keys for keys in learned.hosts.values()
        )
        host_learning = learning_state(
            host_state.first_seen,
            self.learning_window,
            now,
            baselined=host_state.baselined or host in learned.hosts,
        ).learning
        fleet_ready = (
            state.fleet_baselined
            or bool(learned.fleet)
            or now - (state.started_at or now) >= self.learning_window
        )
        novel = not learning and (
            (new_on_host and not host_learning) or (new_on_fleet and fleet_ready)
        )
        with_key = state.fleet[key].hosts_with(host) if key in state.fleet else 1
        prevalence = Prevalence(with_key, len(state.hosts))

        def scores(paths: list[ExecutionPath]) -> list[tuple[Score, ExecutionPath]]:
            return [
                (
                    score_path(
                        p, self.baseline, prevalence=prevalence, parent_history=self._history(p)
                    ),
                    p,
                )
                for p in paths
            ]

        if earlier is None and not novel and not learning and known:
            # Only unlearnable paths can make this key a finding, and its unchanged
            # paths were not (or it would be one): look at the others first.
            fresh = [p for p in group if id(p) not in known]
            if not any(_unlearnable(s) for s, _ in scores(fresh)):
                return None
        scored = scores(group)
        best, path = max(scored, key=lambda item: item[0].score)
        unlearnable = any(_unlearnable(s) for s, _ in scored)
        alerts = novel and severity_rank(best.severity) >= self.min_rank
        if earlier is None and not unlearnable and not alerts:
            return None
        # What learning would have taken in silently before.
        during_learning = learning or (host_learning and not novel)
        occurrences = tuple(
            Occurrence(
                pid=p.child.pid,
                start_time=p.child.start_time,
                severity=s.severity,
                score=s.score,
                reasons=s.reasons,
                evidence=Evidence.of(p),
                seen_during_learning=during_learning,
            )
            for s, p in scored
        )
        return Finding(
            id=fid,
            host=host,
            key=key,
            pid=path.child.pid,
            pids=tuple(sorted({p.child.pid for p in group})),
            parent=path.parent.basename if path.parent else "?",
            child=path.child.basename,
            severity=best.severity,
            score=best.score,
            reasons=best.reasons,
            evidence=Evidence.of(path),
            first_seen=earlier.first_seen if earlier else now,
            last_seen=now,
            new_on_host=new_on_host,
            new_on_fleet=new_on_fleet,
            prevalence=prevalence,
            is_new=earlier is None,
            occurrences=occurrences,
            seen_during_learning=during_learning if earlier is None else False,
        )

    # -- state -----------------------------------------------------------------------

    def _remember(self, finding: Finding) -> Finding:
        self.state.findings[finding.id] = FindingRecord(
            id=finding.id,
            host=finding.host,
            key=finding.key,
            first_seen=finding.first_seen,
            last_seen=finding.last_seen,
            severity=finding.severity,
            score=finding.score,
        )
        return finding

    def _host(self, host: str, now: float) -> HostState:
        if self.state.started_at is None:
            self.state.started_at = now
        return self.state.hosts.setdefault(host, HostState(first_seen=now))

    def _history(self, path: ExecutionPath) -> set[str] | None:
        name = parent_app(path)
        return self.state.parents.get(name) if name else None

    def _record(self, path: ExecutionPath, key: str, now: float) -> None:
        self.state.see(path.host, key, now)
        name = parent_app(path)
        if name:
            self.state.parents.setdefault(name, set()).add(path.child.basename)
            self.state.hosts[path.host].parents.setdefault(name, set()).add(path.child.basename)


def _unlearnable(score: Score) -> bool:
    """A path whose intrinsic points alone reach medium: never learned silently."""
    return severity_rank(score.intrinsic_severity) >= NEVER_LEARNED


def _grouped(paths: Iterable[ExecutionPath]) -> dict[tuple[str, str], list[ExecutionPath]]:
    """Paths by (host, path key): the processes of one path are judged together."""
    groups: dict[tuple[str, str], list[ExecutionPath]] = {}
    for path in paths:
        groups.setdefault((path.host, path.path_key()), []).append(path)
    return groups


def _ranked(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (-f.score, -f.prevalence.rarity, f.host, f.key))
