"""What a finding shows the analyst: the answers to DET0493's triage questions.

Which process initiated execution (the lineage chain up to the root, each with its user
and command line), through which channel (each of fds 0-2, the process at the other end
and how it relates to the child, and the IPC that reached the child from outside its
lineage), as which user and in which session, tty and container.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from fleetctl.detection.paths import Channel, ExecutionPath, Feed, ProcessRef

LINE_CMDLINE = 160  # command lines are cut in text lines only, never in the data


@dataclass(frozen=True)
class Evidence:
    lineage: tuple[ProcessRef, ...]
    channels: tuple[Channel, ...]
    feeds: tuple[Feed, ...]
    parent_feeds: tuple[Feed, ...]
    parent_listeners: tuple[str, ...]
    child_listeners: tuple[str, ...]
    user: str
    tty: str
    session: str
    cgroup: str
    container: str
    responsible: ProcessRef | None

    @classmethod
    def of(cls, path: ExecutionPath) -> Evidence:
        return cls(
            lineage=path.lineage,
            channels=path.channels,
            feeds=path.feeds,
            parent_feeds=path.parent_feeds,
            parent_listeners=path.parent_listeners,
            child_listeners=path.child_listeners,
            user=path.child.user,
            tty=path.tty,
            session=path.session,
            cgroup=path.cgroup,
            container=path.container,
            responsible=path.responsible,
        )

    @property
    def cmdlines(self) -> tuple[str, ...]:
        """Command lines of child, parent, grandparent (as far as known)."""
        return tuple(ref.cmdline for ref in self.lineage[:3])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cmdlines"] = list(self.cmdlines)
        return data

    def lines(self) -> list[str]:
        """The evidence as short lines of text (for logs, tickets and the CLI)."""
        out = ["lineage:"]
        for depth, ref in enumerate(self.lineage):
            user = f" ({ref.user})" if ref.user else ""
            cmdline = (
                ref.cmdline
                if len(ref.cmdline) <= LINE_CMDLINE
                else ref.cmdline[:LINE_CMDLINE] + "…"
            )
            out.append(f"  {'  ' * depth}{ref.label}{user} {cmdline}".rstrip())
        for ch in self.channels:
            ends = ", ".join(f"{p.label} [{p.relation}]" for p in ch.partners)
            target = f" {ch.target}" if ch.target else ""
            out.append(f"fd {ch.fd}: {ch.kind}{target}" + (f" <-> {ends}" if ends else ""))
        out += [f"feed: {f.describe()}" for f in self.feeds]
        out += [f"parent feed: {f.describe()}" for f in self.parent_feeds]
        if self.parent_listeners:
            out.append("parent listens on: " + ", ".join(self.parent_listeners))
        context = [
            f"{k} {v}"
            for k, v in (
                ("user", self.user),
                ("tty", self.tty),
                ("session", self.session),
                ("container", self.container),
            )
            if v
        ]
        if context:
            out.append(", ".join(context))
        return out
