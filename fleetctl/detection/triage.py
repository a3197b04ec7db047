"""Answers to DET0493's triage questions for one occurrence of a finding, from stored facts.

The seed asks SOC playbooks to answer, for a suspicious execution: which process
initiated it and under what user and session; whether IPC activity preceded it; whether
the parent normally starts such children; what the child did next; and whether the logs
can be trusted over that time. Each ``Answer`` here says ``answered``, ``partial`` or
``unknown``, in words, with the evidence rows it used; an answer the store cannot give
says why, because "no" and "not collected" must never look alike.

Pure judging: the facts come in a ``Facts`` (read by ``storage.triage`` and the
detection snapshot of the host at the occurrence's time); nothing here reads a database.
``initiator_chain`` is used both to decide what to read and to judge it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetctl.detection.detector import app_name
from fleetctl.detection.normalize import basename, text, to_int
from fleetctl.detection.paths import PathBuilder
from fleetctl.detection.records import START_TIME_SLACK, same_start
from fleetctl.detection.snapshot import HostSnapshot
from fleetctl.timeutil import format_duration, iso
from storage.triage import Gap, PairSighting, StoredRow

ANSWERED, PARTIAL, UNKNOWN = "answered", "partial", "unknown"
QUESTIONS = {
    "initiator": "Which process initiated the execution (the other end of the channel)?",
    "user": "As which user and session?",
    "preceded": "Did the IPC activity precede the execution?",
    "prevalence": "Has this parent started such children before, here and on the fleet?",
    "next": "What did the child do next?",
    "telemetry": "Was the host's telemetry complete over that time?",
}
DEFAULT_WINDOW = 600
MAX_WINDOW = 86_400
DEFAULT_LIMIT = 20
MAX_LIMIT = 500
MAX_DEPTH = 5  # hops from the child along IPC channels
# A data-loss marker is recorded when the run after the lost ones arrives: one this long
# after the window still speaks of runs inside it (the longest shipped IPC interval).
GAP_GRACE = 300
# Queries whose rows are processes, and those whose rows are a process's IPC objects.
PROCESS_ROWS = frozenset(
    {"process_lineage", "process_lineage_darwin", "process_exec_events", "es_exec_lineage"}
)
EXEC_EVENTS = frozenset({"process_exec_events", "es_exec_lineage"})
# Snapshot queries report every run, so their last run says the host still collects;
# a differential query reports only changes, and its silence means nothing.
SNAPSHOT_ROWS = frozenset(
    {
        "process_lineage",
        "process_lineage_darwin",
        "process_stdio",
        "stdio_channels",
        "pipe_partners",
        "unix_socket_peers",
    }
)
CHANNEL_ROWS = frozenset(
    {
        "process_stdio",
        "stdio_channels",
        "pipe_partners",
        "named_fifos",
        "unix_sockets",
        "unix_listeners",
        "unix_socket_peers",
        "unix_socket_events",
        "listening_ports",
    }
)
LINEAGE = ("process_lineage", "process_lineage_darwin")


# -- the chain from the child to the process that fed it -----------------------------


@dataclass(frozen=True)
class Hop:
    """A process reached along an IPC channel: from which process, through what."""

    depth: int
    pid: int
    from_pid: int
    via: str
    path: str = ""  # the FIFO or socket path the hop went through, if any


@dataclass(frozen=True)
class Chain:
    """The processes at the other end of the child's channels, and beyond.

    ``hops`` in the order found (fd 0 first, depth first: the way commands flow into a
    shell); ``initiator`` is the farthest process reached; ``dangling`` describes channel
    ends no row names a process for; ``paths`` are the FIFO and socket paths involved."""

    hops: tuple[Hop, ...] = ()
    initiator: int | None = None
    dangling: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    cut: bool = False

    def route(self) -> list[Hop]:
        """The hops from the child to the initiator, in order."""
        by_pid = {h.pid: h for h in self.hops}
        out: list[Hop] = []
        current = by_pid.get(self.initiator or -1)
        while current is not None and len(out) <= MAX_DEPTH:
            out.append(current)
            current = by_pid.get(current.from_pid)
        return list(reversed(out))


def _reads(mode: str) -> bool:
    """Whether an end opened with ``mode`` can bring data in (unknown: assume it can)."""
    return not mode or "r" in mode


def _writes(mode: str) -> bool:
    return not mode or "w" in mode


def fifo_ends(snap: HostSnapshot) -> dict[str, dict[int, str]]:
    """FIFO path -> the processes holding it open, with their open mode."""
    ends: dict[str, dict[int, str]] = {}
    for pid, held in snap.fifos.items():
        for fifo in held:
            if fifo.path:
                ends.setdefault(fifo.path, {})[pid] = fifo.mode
    for pid, stdio in snap.stdio.items():
        for end in stdio.values():
            if end.kind == "fifo" and end.target:
                ends.setdefault(end.target, {}).setdefault(pid, end.mode)
    return ends


def _neighbours(
    snap: HostSnapshot, builder: PathBuilder, pid: int, fifos: Mapping[str, Mapping[int, str]]
) -> list[tuple[int, str, str]]:
    """(process, how, path) whose data can reach ``pid``: the other end of a stdio fd it
    reads, the writers of a FIFO it reads, its unix socket peers and the servers of the
    paths it connected to. Output (a pipe it only writes to) leads nowhere upstream."""
    found: list[tuple[int, str, str]] = []
    for ch in builder.channels(pid):
        if ch.fd != 0 and not _reads(ch.mode):
            continue
        for partner in ch.partners:
            if ch.kind == "pipe" and partner.relation in ("parent", "ancestor"):
                continue  # how it was started, not what fed it: its lineage shows that
            target = f" {ch.target}" if ch.target else ""
            path = ch.target if ch.kind in ("fifo", "unix") else ""
            found.append((partner.pid, f"fd {ch.fd} {ch.kind}{target}", path))
    for path, holders in fifos.items():
        if pid in holders and _reads(holders[pid]):
            found += [
                (other, f"FIFO {path}", path)
                for other, mode in sorted(holders.items())
                if _writes(mode)
            ]
    for peer in snap.unix_peers.get(pid, []):
        if peer.peer_pid and peer.state != "listen":
            where = peer.path or peer.peer_path
            found.append((peer.peer_pid, f"unix socket {where}".rstrip(), where))
    for path in snap.unix_connects.get(pid, {}).values():
        servers = sorted(snap.unix_servers(path))
        found += [(server, f"unix socket {path}", path) for server in servers]
    return [(other, how, path) for other, how, path in found if other != pid and other > 0]


def initiator_chain(snap: HostSnapshot, pid: int, limit: int = DEFAULT_LIMIT) -> Chain:
    """Walk from ``pid`` upstream along the channels it reads (fd 0 first), depth first,
    to at most ``MAX_DEPTH`` hops and ``limit`` processes; the child's own descendants
    are not walked (they inherit its channels and feed nothing into it)."""
    builder = PathBuilder(snap)
    fifos = fifo_ends(snap)
    skip = {pid, *snap.descendants(pid)}
    hops: list[Hop] = []
    seen = set(skip)
    paths: dict[str, None] = {}
    cut = False

    def walk(current: int, depth: int) -> None:
        nonlocal cut
        if depth > MAX_DEPTH:
            return
        for other, how, path in _neighbours(snap, builder, current, fifos):
            if path:
                paths[path] = None
            if other in seen:
                continue
            if len(hops) >= limit:
                cut = True
                return
            seen.add(other)
            hops.append(Hop(depth, other, current, how, path))
            walk(other, depth + 1)

    walk(pid, 1)
    dangling = tuple(
        f"fd {ch.fd} is a {ch.kind}{' ' + ch.target if ch.target else ''}"
        for ch in builder.channels(pid)
        if ch.kind in ("fifo", "unix", "tcp", "udp", "socket", "pipe") and not ch.partners
    )
    for ch in builder.channels(pid):
        if ch.kind in ("fifo", "unix") and ch.target.startswith("/"):
            paths[ch.target] = None
    for listener in builder.parent_listeners(snap.processes[pid]) if pid in snap.processes else ():
        if listener.startswith("unix:"):
            paths[listener.removeprefix("unix:")] = None
    initiator = None
    if hops:  # the first hop found at the greatest depth: fd 0's route wins ties
        deepest = max(h.depth for h in hops)
        initiator = next(h.pid for h in hops if h.depth == deepest)
    return Chain(tuple(hops), initiator, dangling, tuple(paths), cut)


# -- facts and answers ----------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """The occurrence asked about: its process, when detection first saw it, and its
    evidence as first stored (lineage, channels), from the finding's path."""

    host: str
    pid: int
    start_time: int | None
    first_seen: int
    parent: str
    child: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def at(self) -> int:
        """The moment the answers look at the host: when detection first saw it."""
        return self.first_seen


@dataclass(frozen=True)
class Rows:
    """Stored rows of one read, and whether its limit cut them."""

    rows: tuple[StoredRow, ...] = ()
    cut: bool = False


@dataclass(frozen=True)
class Facts:
    """Everything the answers use: the host's snapshot at the occurrence's time (None
    when its rows are gone), the walk of its channels, and bounded reads of history."""

    subject: Subject
    snapshot: HostSnapshot | None
    chain: Chain
    window: int
    now: int
    limit: int = DEFAULT_LIMIT
    channel_rows: Rows = Rows()
    children: Rows = Rows()
    activity: Rows = Rows()
    starts: Rows = Rows()
    history_start: int | None = None
    pairs: tuple[PairSighting, ...] = ()
    pairs_cut: bool = False
    parent_children: tuple[PairSighting, ...] = ()
    hosts_total: int = 0
    gaps: tuple[Gap, ...] = ()
    rejected: int = 0
    last_runs: Mapping[str, int] = field(default_factory=dict)

    @property
    def start(self) -> int:
        """When the child started (when detection first saw it, if its start is unknown)."""
        return self.subject.start_time if self.subject.start_time is not None else self.at

    @property
    def at(self) -> int:
        return self.subject.first_seen

    @property
    def end(self) -> int:
        return self.start + self.window


@dataclass(frozen=True)
class Answer:
    key: str
    status: str
    answer: str
    why: str = ""
    evidence: tuple[dict[str, Any], ...] = ()
    cut: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "question": QUESTIONS[self.key],
            "status": self.status,
            "answer": self.answer,
            "why": self.why,
            "evidence": list(self.evidence),
            "evidence_cut": self.cut,
        }


@dataclass(frozen=True)
class Triage:
    host: str
    pid: int
    start_time: int | None
    at: int
    window: int
    answers: tuple[Answer, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "pid": self.pid,
            "start_time": self.start_time,
            "start_time_iso": iso(self.start_time),
            "at": iso(self.at),
            "window": format_duration(self.window),
            "answers": [a.to_dict() for a in self.answers],
        }


def judge(facts: Facts) -> Triage:
    """Every triage question answered from ``facts``."""
    answers = (
        initiator(facts),
        user_and_session(facts),
        preceded(facts),
        prevalence(facts),
        next_steps(facts),
        telemetry(facts),
    )
    s = facts.subject
    return Triage(s.host, s.pid, s.start_time, s.at, facts.window, answers)


def _cut(rows: Sequence[dict[str, Any]], limit: int, cut: bool = False) -> tuple[Any, bool]:
    return tuple(rows[:limit]), cut or len(rows) > limit


def _label(snap: HostSnapshot | None, pid: int) -> str:
    proc = snap.processes.get(pid) if snap is not None else None
    return f"{proc.basename or '?'}[{pid}]" if proc is not None else f"?[{pid}]"


def _process_row(snap: HostSnapshot | None, pid: int, role: str) -> dict[str, Any]:
    proc = snap.processes.get(pid) if snap is not None else None
    if proc is None:
        return {"role": role, "pid": pid, "name": "", "note": "in no process row"}
    return {
        "role": role,
        "pid": pid,
        "name": proc.basename,
        "start_time": iso(proc.start_time),
        "uid": proc.uid,
        "euid": proc.euid,
        "cmdline": proc.cmdline,
    }


# -- 1. the initiating process --------------------------------------------------------


def initiator(facts: Facts) -> Answer:
    snap, chain, s = facts.snapshot, facts.chain, facts.subject
    if snap is None or s.pid not in snap.processes:
        return _initiator_from_evidence(facts)
    if chain.initiator is None:
        why = "; ".join(chain.dangling) or "fds 0-2 of the child are no IPC channel"
        return Answer(
            "initiator",
            UNKNOWN,
            f"no process at the other end of {_label(snap, s.pid)}'s channels at {iso(s.at)}",
            f"{why}, and no row names a process holding the other end: it had exited "
            "before the snapshot (or stock osquery cannot see the peer of a unix socket)",
        )
    route = chain.route()
    steps = " <- ".join(f"{_label(snap, h.pid)} ({h.via})" for h in route)
    rows = [
        {"role": f"hop {h.depth}", "from": _label(snap, h.from_pid), "via": h.via}
        | _process_row(snap, h.pid, f"hop {h.depth}")
        for h in chain.hops
    ]
    far = chain.initiator
    lineage = [_process_row(snap, far, "initiator")] + [
        _process_row(snap, p.pid, "initiator's ancestor") for p in snap.ancestors(far)
    ]
    evidence, cut = _cut(rows + lineage, facts.limit, chain.cut)
    gone = [h.pid for h in route if h.pid not in snap.processes]
    line = " <- ".join(_label(snap, p.pid) for p in snap.ancestors(far)) or "no known parent"
    answer = (
        f"{_label(snap, far)}: {_label(snap, s.pid)} <- {steps}; "
        f"its lineage: {_label(snap, far)} <- {line}"
    )
    if gone:
        return Answer(
            "initiator",
            PARTIAL,
            answer,
            f"process {gone[0]} is named by a channel row but is in no process row at "
            f"{iso(s.at)}: it had exited, so its lineage is unknown",
            evidence,
            cut,
        )
    return Answer("initiator", ANSWERED, answer, "", evidence, cut)


def _initiator_from_evidence(facts: Facts) -> Answer:
    """The snapshot no longer has the child (pruned or never stored): what the stored
    evidence says of its channels' other ends, at the time it was judged."""
    s = facts.subject
    rows = []
    for channel in s.evidence.get("channels") or []:
        for partner in channel.get("partners") or []:
            proc = partner.get("process") or {}
            rows.append(
                {
                    "role": "other end",
                    "via": f"fd {channel.get('fd')} {channel.get('kind')}",
                    "pid": partner.get("pid"),
                    "name": proc.get("basename", ""),
                    "relation": partner.get("relation", ""),
                    "cmdline": proc.get("cmdline", ""),
                }
            )
    why = (
        f"the host's rows at {iso(s.at)} are no longer in the store (pruned), so the "
        "other end's own lineage cannot be rebuilt"
    )
    if not rows:
        return Answer("initiator", UNKNOWN, "not in the store", why)
    evidence, cut = _cut(rows, facts.limit)
    first = rows[0]
    return Answer(
        "initiator",
        PARTIAL,
        f"{first['name'] or '?'}[{first['pid']}] ({first['via']}), from the stored evidence",
        why,
        evidence,
        cut,
    )


# -- 2. user and session ---------------------------------------------------------------


def user_and_session(facts: Facts) -> Answer:
    snap, s = facts.snapshot, facts.subject
    lineage = list(s.evidence.get("lineage") or [])
    child = lineage[0] if lineage else {}
    uid, euid, username = child.get("uid"), child.get("euid"), child.get("username") or ""
    if uid is None and euid is None and not username:
        return Answer(
            "user",
            UNKNOWN,
            "no user is known for the child",
            "its process row has no uid, euid or username column",
        )
    who = username or f"uid {uid}"
    if euid is not None and euid != uid:
        who += f" (euid {euid})"
    rows: list[dict[str, Any]] = [
        {
            "role": "child" if i == 0 else "ancestor",
            "pid": ref.get("pid"),
            "name": ref.get("basename", ""),
            "uid": ref.get("uid"),
            "euid": ref.get("euid"),
            "username": ref.get("username", ""),
        }
        for i, ref in enumerate(lineage)
    ]
    far = facts.chain.initiator
    if snap is not None and far is not None and far in snap.processes:
        proc = snap.processes[far]
        rows.append(
            {
                "role": "initiator",
                "pid": far,
                "name": proc.basename,
                "uid": proc.uid,
                "euid": proc.euid,
                "username": proc.username,
            }
        )
        who += f"; the initiator {_label(snap, far)} runs as uid {proc.uid}"
    context = {key: s.evidence.get(key) for key in ("session", "tty", "container", "cgroup")}
    if context.get("cgroup") == "/":
        context["cgroup"] = None  # no cgroup of its own: nothing to tell
    logins = []
    if snap is not None:
        pids = [int(ref.get("pid")) for ref in lineage if ref.get("pid") is not None]
        logins = snap.sessions_for(pids, context.get("tty") or "")
        rows += [
            {"role": "login", "pid": x.pid, "username": x.user, "tty": x.tty, "from": x.host}
            for x in logins
        ]
    shown = ", ".join(f"{k} {v}" for k, v in context.items() if v)
    evidence, cut = _cut(rows, facts.limit)
    answer = who + (f"; {shown}" if shown else "")
    if context.get("session") or context.get("tty") or logins:
        return Answer("user", ANSWERED, answer, "", evidence, cut)
    missing = [] if username else ["username (process_lineage has uid and euid only)"]
    return Answer(
        "user",
        PARTIAL,
        answer,
        "no login session: no logged_in_users row has the child's tty or a session "
        "leader among its ancestors, and the child has no tty"
        + (f"; not collected: {', '.join(missing)}" if missing else ""),
        evidence,
        cut,
    )


# -- 3. did the IPC precede the execution ---------------------------------------------


# Where each channel query names the IPC object (its ``path`` column, elsewhere, is the
# process's executable).
_OBJECT = {
    "process_stdio": ("target",),
    "stdio_channels": ("target",),
    "named_fifos": ("path",),
    "unix_sockets": ("path",),
    "unix_listeners": ("path",),
    "unix_socket_peers": ("path", "peer_path"),
    "unix_socket_events": ("path",),
}
_HAS_PROCESS_PATH = frozenset(q for q, cols in _OBJECT.items() if "path" in cols)


def _object(row: StoredRow) -> str:
    c = row.columns
    if row.query in _OBJECT:
        found = text(c, *_OBJECT[row.query])
    elif row.query == "listening_ports":
        found = f"{text(c, 'address')}:{text(c, 'port')}".strip(":")
    else:
        found = ""
    if not found and text(c, "inode") not in ("", "0"):
        found = f"inode {text(c, 'inode')}"
    return found


def _other_end(c: Mapping[str, str]) -> str:
    """The process a channel row names at the other end (``peer_pid``/``partner_pid``)."""
    for prefix in ("peer", "partner"):
        pid = to_int(c.get(f"{prefix}_pid"))
        if pid is not None and pid > 0:
            return f"{text(c, f'{prefix}_name') or '?'}[{pid}]"
    return ""


def _row_evidence(row: StoredRow, role: str = "") -> dict[str, Any]:
    c = row.columns
    exe = text(c, "process_path") if row.query in _HAS_PROCESS_PATH else text(c, "path")
    out: dict[str, Any] = {"role": role} if role else {}
    return out | {
        "query": row.query,
        "pid": to_int(c.get("pid")),
        "name": basename(exe) or text(c, "name"),
        "fd": to_int(c.get("fd")),
        "kind": text(c, "kind", "type", "action", "state"),
        "object": _object(row),
        "other_end": _other_end(c),
        "first_seen": iso(row.first_seen) if row.first_seen is not None else "before history",
        "removed_at": iso(row.removed_at),
    }


def _names_channel(row: StoredRow, facts: Facts) -> bool:
    """Whether a row is about the child's channel itself: its FIFO or socket path, one of
    the inodes on the child's fds 0-2, or the child as the other end."""
    c, pid = row.columns, facts.subject.pid
    if _object(row) in facts.chain.paths:
        return True
    for prefix in ("peer", "partner"):
        if to_int(c.get(f"{prefix}_pid")) == pid:
            return True
    snap = facts.snapshot
    inodes = {e.inode for e in snap.stdio.get(pid, {}).values() if e.inode} if snap else set()
    return to_int(c.get("inode")) in inodes


def preceded(facts: Facts) -> Answer:
    s, snap = facts.subject, facts.snapshot
    rows = sorted(
        (r for r in facts.channel_rows.rows if to_int(r.columns.get("pid")) != s.pid),
        key=lambda r: -1 if r.first_seen is None else r.first_seen,
    )
    about = [r for r in rows if _names_channel(r, facts)]
    shown = [_row_evidence(r) for r in about + [r for r in rows if r not in about]]
    evidence, cut = _cut(
        list({tuple(e.items()): e for e in shown}.values()), facts.limit, facts.channel_rows.cut
    )
    if s.start_time is None:
        return Answer(
            "preceded",
            UNKNOWN,
            "cannot tell",
            "the child's start time is not known (its process row has no start_time)",
            evidence,
            cut,
        )
    started = f"the child started at {iso(s.start_time)}"
    if not rows:
        return Answer(
            "preceded",
            UNKNOWN,
            "cannot tell",
            f"{started}, and no stored row of the channel's other end or its FIFO or "
            f"socket path existed at {iso(s.at)}",
        )
    earliest = (about or rows)[0]
    what = _row_evidence(earliest)
    seen = (
        "before the collected history began"
        if earliest.first_seen is None
        else f"at {iso(earliest.first_seen)}"
    )
    named = f"{what['name'] or '?'}[{what['pid']}] {what['object'] or what['kind']}".strip()
    if earliest.first_seen is None or earliest.first_seen < s.start_time:
        lead = (
            ""
            if earliest.first_seen is None
            else f", {format_duration(s.start_time - earliest.first_seen)} before"
        )
        if not about:
            return Answer(
                "preceded",
                PARTIAL,
                f"likely: {earliest.query} row of {named}, the process at the other end, "
                f"first seen {seen}{lead}; {started}",
                "no stored row names the channel itself (its FIFO or socket path, or "
                "its inode), only the process at its other end",
                evidence,
                cut,
            )
        return Answer(
            "preceded",
            ANSWERED,
            f"yes: {earliest.query} row of {named} first seen {seen}{lead}; {started}",
            "",
            evidence,
            cut,
        )
    route = facts.chain.route()
    near = route[0].pid if route else None
    proc = snap.processes.get(near) if snap is not None and near is not None else None
    near_start = proc.start_time if proc is not None else None
    if near_start is not None and near_start < s.start_time:
        return Answer(
            "preceded",
            PARTIAL,
            f"likely: {_label(snap, near or 0)} at the other end of the channel started at "
            f"{iso(near_start)}, before the child; {started}",
            f"the channel itself was first collected {seen}, after the child started: a "
            "snapshot shows only what existed when it ran, so which came first between "
            "the runs is not recorded",
            evidence,
            cut,
        )
    if near is not None and (near_start is None or same_start(near_start, s.start_time)):
        return Answer(
            "preceded",
            UNKNOWN,
            "cannot tell",
            f"{_label(snap, near)} at the other end of the channel started with the child "
            f"(within a second: one shell pipeline, say), and the channel was first "
            f"collected {seen}, after both; {started}",
            evidence,
            cut,
        )
    return Answer(
        "preceded",
        ANSWERED,
        f"no: the channel's rows were first seen {seen} and the process at its other end "
        f"started after the child; {started}",
        "",
        evidence,
        cut,
    )


# -- 4. has the parent started such children before -----------------------------------


def parent_app(evidence: Mapping[str, Any], platform: str) -> str | None:
    """The parent as the detector remembers its children (``python3 http.server``)."""
    lineage = evidence.get("lineage") or []
    if len(lineage) < 2:
        return None
    p = lineage[1]
    return app_name(
        p.get("basename", ""), tuple(p.get("names") or ()), p.get("cmdline", ""), platform
    )


def _earlier_starts(facts: Facts, app: str, platform: str) -> list[StoredRow]:
    """Distinct processes (pid, start time) of the starts rows, started before the
    child, under a parent that is the same app."""
    s = facts.subject
    found: dict[tuple[int | None, int | None], StoredRow] = {}
    for row in facts.starts.rows:
        c = row.columns
        start = to_int(c.get("start_time")) or to_int(c.get("time"))
        if s.start_time is not None and start is not None and start >= s.start_time:
            continue
        pid = to_int(c.get("pid"))
        if pid == s.pid and same_start(start, s.start_time):
            continue
        parent_base = basename(text(c, "parent_path")) or text(c, "parent_name")
        parent_line = text(c, "parent_cmdline")
        if parent_line and app_name(parent_base, (parent_base,), parent_line, platform) != app:
            continue
        found.setdefault((pid, start), row)
    return list(found.values())


def prevalence(facts: Facts) -> Answer:
    s = facts.subject
    platform = facts.snapshot.platform if facts.snapshot is not None else "linux"
    app = parent_app(s.evidence, platform or "linux")
    if app is None:
        return Answer(
            "prevalence", UNKNOWN, "no parent known", "the child's lineage stops at itself"
        )
    before = [p for p in facts.pairs if p.first_seen < s.at]
    here = [p for p in before if p.host == s.host]
    other_hosts = sorted({p.host for p in before if p.host != s.host})
    starts = _earlier_starts(facts, app, platform or "linux")
    reach = (
        f"process history since {iso(facts.history_start)}"
        if facts.history_start is not None
        else "no process history"
    )
    n = f"{len(starts)}{'+' if facts.starts.cut else ''}"
    rows: list[dict[str, Any]] = [
        {
            "role": "pair" if p.first_seen < s.at else "pair, since this finding",
            "host": p.host,
            "parent": p.parent,
            "child": p.child,
            "first_seen": iso(p.first_seen),
        }
        for p in facts.pairs
    ]
    rows += [_row_evidence(r, "earlier start") for r in starts]
    rows += [
        {"role": "other child here", "host": p.host, "parent": p.parent, "child": p.child}
        | {"first_seen": iso(p.first_seen)}
        for p in facts.parent_children
        if p.child != s.child
    ]
    evidence, cut = _cut(rows, facts.limit, facts.pairs_cut or facts.starts.cut)
    fleet = f"on {len(other_hosts)} other of {facts.hosts_total} host(s)"
    if other_hosts:
        fleet += f" ({', '.join(other_hosts[:5])}{', ...' if len(other_hosts) > 5 else ''})"
    if here or starts:
        since = f" since {iso(here[0].first_seen)}" if here else ""
        head = f"yes: {app} started {s.child} on {s.host}{since}"
    else:
        head = f"no: {app} never started {s.child} on {s.host} before"
    return Answer(
        "prevalence",
        ANSWERED,
        f"{head} ({n} earlier start(s) in its {reach}); {fleet} before this finding",
        "",
        evidence,
        cut,
    )


# -- 5. what the child did next ----------------------------------------------------------


def children_in_window(
    rows: Iterable[StoredRow], parents: Mapping[int, int | None], start: int, end: int
) -> list[StoredRow]:
    """Process rows whose parent is one of ``parents`` (pid -> start time) and that
    started from ``start`` to ``end`` (after their parent, when its start is known)."""
    found: dict[tuple[int | None, int | None], StoredRow] = {}
    for row in rows:
        c = row.columns
        parent = to_int(text(c, "parent", "ppid", "parent_pid"))
        if parent is None or parent not in parents:
            continue
        born = to_int(c.get("start_time")) or to_int(c.get("time"))
        parent_born = to_int(c.get("parent_start_time"))
        if parent_born is not None and not same_start(parent_born, parents[parent]):
            continue  # the pid's earlier or later owner
        # Start times are boot time plus ticks, and boot time is read anew each run.
        if born is not None and not start - START_TIME_SLACK <= born <= end:
            continue
        found.setdefault((to_int(c.get("pid")), born), row)
    return list(found.values())


def of_processes(rows: Iterable[StoredRow], starts: Mapping[int, int | None]) -> list[StoredRow]:
    """Rows of the processes ``starts`` names (pid -> start time), not of an earlier or
    later process that had the same pid."""
    found = []
    for row in rows:
        pid = to_int(row.columns.get("pid"))
        started = to_int(row.columns.get("start_time"))
        if pid is not None and pid in starts and same_start(started, starts[pid]):
            found.append(row)
    return found


def next_steps(facts: Facts) -> Answer:
    kids = list(facts.children.rows)
    kid_rows = [
        {
            "role": "child process",
            "pid": to_int(r.columns.get("pid")),
            "parent": to_int(text(r.columns, "parent", "ppid", "parent_pid")),
            "name": basename(text(r.columns, "path")) or text(r.columns, "name"),
            "start_time": iso(to_int(r.columns.get("start_time")) or to_int(r.columns.get("time"))),
            "cmdline": text(r.columns, "cmdline"),
            "query": r.query,
        }
        for r in kids
    ]
    io: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in facts.activity.rows:
        if _is_activity(r):
            row = _row_evidence(r, "socket" if r.query.startswith("unix") else "fd")
            io.setdefault((row["pid"], row["fd"], row["object"], row["kind"]), row)
    evidence, cut = _cut(
        kid_rows + list(io.values()), facts.limit, facts.children.cut or facts.activity.cut
    )
    names = sorted({str(r["name"]) for r in kid_rows if r["name"]})
    objects = sorted(
        {
            str(r["object"])
            for r in io.values()
            if r["object"] and not str(r["object"]).startswith("inode ")
        }
    )
    said = [
        f"{len(kid_rows)} child process(es)" + (f" ({', '.join(names[:6])})" if names else ""),
        f"{len(objects)} socket(s), FIFO(s) or file(s)"
        + (f" ({', '.join(objects[:4])}{', ...' if len(objects) > 4 else ''})" if objects else ""),
    ]
    window = (
        f"within {format_duration(facts.window)} of its start "
        f"({iso(facts.start)} to {iso(facts.end)})"
    )
    answer = f"{'; '.join(said)} {window}"
    lineage_runs = max((facts.last_runs.get(q, 0) for q in LINEAGE), default=0)
    gaps = []
    if lineage_runs < facts.end:
        gaps.append(
            f"processes were last collected at {iso(lineage_runs) if lineage_runs else 'never'}"
            + (", and the window is not over yet" if facts.now < facts.end else "")
        )
    if not any(q in facts.last_runs for q in EXEC_EVENTS):
        gaps.append(
            "no exec events are collected (process_events), so children that came and went "
            "between two process snapshots are not in the store"
        )
    if gaps:
        return Answer("next", PARTIAL, answer, "; ".join(gaps), evidence, cut)
    return Answer("next", ANSWERED, answer, "", evidence, cut)


def _is_activity(row: StoredRow) -> bool:
    """A row of the child's IPC or files worth showing (not its tty or /dev/null)."""
    kind = text(row.columns, "kind")
    return kind not in ("tty", "pty", "null", "closed")


# -- 6. was telemetry complete ----------------------------------------------------------


def telemetry(facts: Facts) -> Answer:
    s = facts.subject
    rows: list[dict[str, Any]] = [
        {
            "role": "data loss",
            "query": g.name,
            "kind": g.kind,
            "detail": g.detail,
            "at": iso(g.unix_time),
            "resolved_at": iso(g.resolved_at),
        }
        for g in facts.gaps
    ]
    open_gaps = [g for g in facts.gaps if g.resolved_at is None]
    if facts.rejected:
        rows.append({"role": "quarantined lines", "count": facts.rejected})
    read = sorted(q for q in facts.last_runs if q in SNAPSHOT_ROWS)
    rows += [{"role": "last run", "query": q, "at": iso(facts.last_runs[q])} for q in read]
    evidence, cut = _cut(rows, facts.limit)
    span = f"from {iso(facts.start)} to {iso(facts.end)}"
    # A query runs every few minutes: one whose last run is older than the window's
    # end (or than a run interval ago, while the window lasts) has stopped.
    due = min(facts.end, facts.now - GAP_GRACE)
    stale = [q for q in read if facts.last_runs[q] < due]
    if open_gaps or facts.rejected:
        parts = []
        if open_gaps:
            parts.append(
                f"{len(open_gaps)} data-loss marker(s) "
                f"({', '.join(sorted({g.kind for g in open_gaps}))}) on "
                f"{', '.join(sorted({g.name for g in open_gaps})[:3])}"
            )
        if facts.rejected:
            parts.append(f"{facts.rejected} quarantined log line(s)")
        return Answer(
            "telemetry",
            ANSWERED,
            f"no: {' and '.join(parts)} {span} (up to {format_duration(GAP_GRACE)} after it)",
            "rows lost there may hide what happened; `fleetctl data-loss --host "
            f"{s.host}` lists them",
            evidence,
            cut,
        )
    if not read:
        return Answer(
            "telemetry",
            UNKNOWN,
            "cannot tell",
            "the host never reported a process or IPC snapshot query",
            evidence,
            cut,
        )
    if stale:
        return Answer(
            "telemetry",
            PARTIAL,
            f"no data-loss marker {span}, but {len(stale)} query(ies) last ran before the "
            f"window's end ({', '.join(stale[:3])})",
            "the host stopped reporting them (offline, or the queries were removed): "
            "what happened after their last run is not in the store",
            evidence,
            cut,
        )
    return Answer(
        "telemetry",
        ANSWERED,
        f"yes: no data-loss marker or quarantined line {span}; {len(read)} process and "
        "IPC snapshot queries reported through it",
        "",
        evidence,
        cut,
    )


__all__ = [
    "ANSWERED",
    "CHANNEL_ROWS",
    "DEFAULT_LIMIT",
    "DEFAULT_WINDOW",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "PARTIAL",
    "PROCESS_ROWS",
    "QUESTIONS",
    "UNKNOWN",
    "Answer",
    "Chain",
    "Facts",
    "Hop",
    "Rows",
    "Subject",
    "Triage",
    "children_in_window",
    "initiator_chain",
    "judge",
    "of_processes",
    "parent_app",
]
