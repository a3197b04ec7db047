"""A process's tree with its IPC edges, as text, Graphviz DOT or JSON.

``build_trace(snapshot, pid)`` takes the ancestry of ``pid`` up to the root and all its
descendants (spawn edges), then adds, for every process in that tree, its stdio channels
and unix socket connections as IPC edges to the processes at the other end; those
processes join the picture as ``peer`` nodes even when they live in another tree (the
``cat`` reading a FIFO next to a reverse shell, the socat client of a socat server).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from fleetctl.detection.paths import PathBuilder
from fleetctl.detection.snapshot import HostSnapshot

_READS = ("r", "rw", "")


@dataclass(frozen=True)
class TraceNode:
    pid: int
    parent: int | None
    name: str
    path: str
    cmdline: str
    user: str
    role: str  # focus, ancestor, descendant, peer


@dataclass(frozen=True)
class TraceEdge:
    source: int
    target: int
    kind: str  # spawn, or a channel kind: pipe, fifo, unix, tcp ...
    label: str = ""


@dataclass(frozen=True)
class ProcessTrace:
    host: str
    focus: int
    nodes: tuple[TraceNode, ...]
    edges: tuple[TraceEdge, ...]

    def node(self, pid: int) -> TraceNode | None:
        return next((n for n in self.nodes if n.pid == pid), None)

    def to_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "focus": self.focus,
            "nodes": [asdict(n) for n in self.nodes],
            "edges": [asdict(e) for e in self.edges],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def to_text(self) -> str:
        """An indented tree; each process's IPC edges (⇠ in, ⇢ out) follow it."""
        lines: list[str] = []
        tree = {n.pid: n for n in self.nodes if n.role != "peer"}
        kids: dict[int, list[int]] = {}
        for e in self.edges:
            if e.kind == "spawn" and e.target in tree:
                kids.setdefault(e.source, []).append(e.target)
        roots = [n.pid for n in tree.values() if n.parent not in tree]

        def walk(pid: int, prefix: str, last: bool, top: bool) -> None:
            node = tree[pid]
            mark = "" if top else ("└─ " if last else "├─ ")
            star = " *" if node.role == "focus" else ""
            user = f" ({node.user})" if node.user else ""
            lines.append(f"{prefix}{mark}{node.name}[{pid}]{star}{user} {node.cmdline}".rstrip())
            inner = prefix + ("" if top else ("   " if last else "│  "))
            for e in self.edges:
                if e.kind == "spawn" or pid not in (e.source, e.target):
                    continue
                incoming = e.target == pid
                other_pid = e.source if incoming else e.target
                other = self.node(other_pid)
                who = f"{other.name}[{other_pid}]" if other else f"?[{other_pid}]"
                arrow, word = ("⇠", "from") if incoming else ("⇢", "to")
                label = f" {e.label}" if e.label else ""
                lines.append(f"{inner}   {arrow} {e.kind}{label} {word} {who}")
            children = sorted(kids.get(pid, []))
            for i, child in enumerate(children):
                walk(child, inner, i == len(children) - 1, False)

        for root in sorted(roots):
            walk(root, "", True, True)
        peers = [n for n in self.nodes if n.role == "peer"]
        if peers:
            lines.append("peers:")
            lines += [f"  {n.name}[{n.pid}] {n.cmdline}".rstrip() for n in peers]
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        """Graphviz: solid spawn edges, dashed IPC edges labelled with kind and path."""
        out = ["digraph trace {", "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
        for n in self.nodes:
            label = _dot_escape(f"{n.name}[{n.pid}]\n{n.cmdline[:60]}")
            style = {"focus": ", style=bold, color=red", "peer": ", style=dashed"}.get(n.role, "")
            out.append(f'  p{n.pid} [label="{label}"{style}];')
        for e in self.edges:
            if e.kind == "spawn":
                out.append(f"  p{e.source} -> p{e.target};")
            else:
                label = _dot_escape(f"{e.kind} {e.label}".strip())
                out.append(f'  p{e.source} -> p{e.target} [style=dashed, label="{label}"];')
        out.append("}")
        return "\n".join(out) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def build_trace(snapshot: HostSnapshot, pid: int, *, descendants: bool = True) -> ProcessTrace:
    """The ancestry and descendants of ``pid`` with every IPC edge touching them."""
    roles: dict[int, str] = {pid: "focus"}
    for ancestor in snapshot.ancestors(pid):
        roles[ancestor.pid] = "ancestor"
    if descendants:
        for child in snapshot.descendants(pid):
            roles.setdefault(child, "descendant")
    edges: list[TraceEdge] = []
    for member in roles:
        found = snapshot.processes.get(member)
        if found is not None and found.parent is not None and found.parent in roles:
            edges.append(TraceEdge(found.parent, member, "spawn"))
    ipc: dict[tuple[int, int, str, str], None] = {}
    builder = PathBuilder(snapshot)
    for member in list(roles):
        for ch in builder.channels(member):
            for partner in ch.partners:
                if partner.relation == "self":
                    continue
                label = f"fd{ch.fd} {ch.target}".strip()
                src, dst = (partner.pid, member) if ch.mode in _READS else (member, partner.pid)
                ipc[(src, dst, ch.kind, label)] = None
        for peer in snapshot.unix_peers.get(member, []):
            if peer.peer_pid and peer.peer_pid != member:
                where = peer.path or peer.peer_path
                low, high = sorted((member, peer.peer_pid))
                if not any(
                    k[:3] == (low, high, "unix") or k[:3] == (high, low, "unix") for k in ipc
                ):
                    ipc[(peer.peer_pid, member, "unix", where)] = None
    for src, dst, kind, label in ipc:
        for end in (src, dst):
            roles.setdefault(end, "peer")
        edges.append(TraceEdge(src, dst, kind, label))
    nodes = []
    for node_pid, role in roles.items():
        proc = snapshot.processes.get(node_pid)
        user = ""
        if proc is not None:
            user = proc.username or ("" if proc.uid is None else f"uid={proc.uid}")
        nodes.append(
            TraceNode(
                pid=node_pid,
                parent=proc.parent if proc else None,
                name=proc.basename if proc else "?",
                path=proc.path if proc else "",
                cmdline=proc.cmdline if proc else "",
                user=user,
                role=role,
            )
        )
    nodes.sort(key=lambda n: n.pid)
    return ProcessTrace(host=snapshot.host, focus=pid, nodes=tuple(nodes), edges=tuple(edges))
