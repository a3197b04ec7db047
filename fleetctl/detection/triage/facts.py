"""What triage answers are made of: the facts read for one occurrence, the answers, and
the evidence rows they show (stored rows as an analyst reads them).

Nothing here reads a database: ``fleetctl.server.triage`` fills a ``Facts`` from the
store, and the question modules (``origin``, ``aftermath``) judge it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetctl.detection.normalize import basename, text, to_int
from fleetctl.detection.snapshot import HostSnapshot
from fleetctl.detection.triage.chain import DEFAULT_LIMIT, Chain
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
MAX_LIMIT = 500
# A data-loss marker is recorded when the run after the lost ones arrives: one this long
# after the window still speaks of runs inside it (the longest shipped IPC interval).
GAP_GRACE = 300
# Queries whose rows are processes (started, with their parent).
PROCESS_ROWS = frozenset(
    {"process_lineage", "process_lineage_darwin", "process_exec_events", "es_exec_lineage"}
)
EXEC_EVENTS = frozenset({"process_exec_events", "es_exec_lineage"})
# Queries whose rows are a process's IPC objects: stdio, pipes, FIFOs, sockets.
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
    # query -> the latest time the host is known to have run it: its last result, or
    # the last execution its schedule report gave; ``schedule_at``: when that report came.
    last_runs: Mapping[str, int] = field(default_factory=dict)
    schedule_at: int | None = None

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


def cut_rows(rows: Sequence[dict[str, Any]], limit: int, cut: bool = False) -> tuple[Any, bool]:
    return tuple(rows[:limit]), cut or len(rows) > limit


def label(snap: HostSnapshot | None, pid: int) -> str:
    proc = snap.processes.get(pid) if snap is not None else None
    return f"{proc.basename or '?'}[{pid}]" if proc is not None else f"?[{pid}]"


def process_row(snap: HostSnapshot | None, pid: int, role: str) -> dict[str, Any]:
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


def object_of(row: StoredRow) -> str:
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


def row_evidence(row: StoredRow, role: str = "") -> dict[str, Any]:
    c = row.columns
    exe = text(c, "process_path") if row.query in _HAS_PROCESS_PATH else text(c, "path")
    out: dict[str, Any] = {"role": role} if role else {}
    return out | {
        "query": row.query,
        "pid": to_int(c.get("pid")),
        "name": basename(exe) or text(c, "name"),
        "fd": to_int(c.get("fd")),
        "kind": text(c, "kind", "type", "action", "state"),
        "object": object_of(row),
        "other_end": _other_end(c),
        "first_seen": iso(row.first_seen) if row.first_seen is not None else "before history",
        "removed_at": iso(row.removed_at),
    }
