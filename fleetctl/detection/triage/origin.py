"""Triage questions 1 to 3: which process initiated the execution, as which user and
session, and whether the IPC activity preceded it."""

from __future__ import annotations

from typing import Any

from fleetctl.detection.normalize import to_int
from fleetctl.detection.records import same_start
from fleetctl.detection.triage.facts import (
    ANSWERED,
    PARTIAL,
    UNKNOWN,
    Answer,
    Facts,
    cut_rows,
    label,
    object_of,
    process_row,
    row_evidence,
)
from fleetctl.timeutil import format_duration, iso
from storage.triage import StoredRow

# -- 1. the initiating process --------------------------------------------------------


def initiator(facts: Facts) -> Answer:
    """The farthest process upstream of the child's channels, with the route to it and
    its own lineage: the process at the other end of a FIFO or socket is rarely the
    child's parent, so its lineage is what says who is behind the execution."""
    snap, chain, s = facts.snapshot, facts.chain, facts.subject
    if snap is None or s.pid not in snap.processes:
        return _initiator_from_evidence(facts)
    if chain.initiator is None:
        why = "; ".join(chain.dangling) or "fds 0-2 of the child are no IPC channel"
        return Answer(
            "initiator",
            UNKNOWN,
            f"no process at the other end of {label(snap, s.pid)}'s channels at {iso(s.at)}",
            f"{why}, and no row names a process holding the other end: it had exited "
            "before the snapshot (or stock osquery cannot see the peer of a unix socket)",
        )
    route = chain.route()
    steps = " <- ".join(f"{label(snap, h.pid)} ({h.via})" for h in route)
    rows = [
        {"role": f"hop {h.depth}", "from": label(snap, h.from_pid), "via": h.via}
        | process_row(snap, h.pid, f"hop {h.depth}")
        for h in chain.hops
    ]
    far = chain.initiator
    lineage = [process_row(snap, far, "initiator")] + [
        process_row(snap, p.pid, "initiator's ancestor") for p in snap.ancestors(far)
    ]
    evidence, cut = cut_rows(rows + lineage, facts.limit, chain.cut)
    gone = [h.pid for h in route if h.pid not in snap.processes]
    line = " <- ".join(label(snap, p.pid) for p in snap.ancestors(far)) or "no known parent"
    answer = (
        f"{label(snap, far)}: {label(snap, s.pid)} <- {steps}; "
        f"its lineage: {label(snap, far)} <- {line}"
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
    evidence, cut = cut_rows(rows, facts.limit)
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
    """The child's uid/euid (and the initiator's), its tty, login, container or cgroup:
    the seed asks under which user and session context execution happened."""
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
        who += f"; the initiator {label(snap, far)} runs as uid {proc.uid}"
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
    evidence, cut = cut_rows(rows, facts.limit)
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


def _names_channel(row: StoredRow, facts: Facts) -> bool:
    """Whether a row is about the child's channel itself: its FIFO or socket path, one of
    the inodes on the child's fds 0-2, or the child as the other end."""
    c, pid = row.columns, facts.subject.pid
    if object_of(row) in facts.chain.paths:
        return True
    for prefix in ("peer", "partner"):
        if to_int(c.get(f"{prefix}_pid")) == pid:
            return True
    snap = facts.snapshot
    inodes = {e.inode for e in snap.stdio.get(pid, {}).values() if e.inode} if snap else set()
    return to_int(c.get("inode")) in inodes


def preceded(facts: Facts) -> Answer:
    """Whether the channel's rows were first seen before the child started. IPC that
    came first and led to execution is the signal; a snapshot cannot order what
    happened between two runs, so a channel first collected later says so."""
    s, snap = facts.subject, facts.snapshot
    rows = sorted(  # oldest first; of equals, a row naming a path before one naming an inode
        (r for r in facts.channel_rows.rows if to_int(r.columns.get("pid")) != s.pid),
        key=lambda r: (-1 if r.first_seen is None else r.first_seen, object_of(r)[:1] != "/"),
    )
    about = [r for r in rows if _names_channel(r, facts)]
    shown = [row_evidence(r) for r in about + [r for r in rows if r not in about]]
    evidence, cut = cut_rows(
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
    what = row_evidence(earliest)
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
            f"likely: {label(snap, near or 0)} at the other end of the channel started at "
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
            f"{label(snap, near)} at the other end of the channel started with the child "
            f"(within a second: one shell pipeline, say), and the channel was first "
            f"collected {seen}, after both; {started}",
            evidence,
            cut,
        )
    if near is None:
        return Answer(
            "preceded",
            UNKNOWN,
            "cannot tell",
            f"the channel was first collected {seen}, after the child started, and no "
            f"process at its other end is known to date it by; {started}",
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
