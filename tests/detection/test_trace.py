"""Process trees with IPC edges, rendered as text, DOT and JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest

from fleetctl.detection import build_trace
from fleetctl.engine import Engine
from fleetctl.validate.scenarios import SH, Running
from tests.detection import live
from tests.detection.rows import BASE, BASE_STDIO, proc, snapshot, stdio

PIPELINE = [
    *BASE,
    proc(800, 601, "/usr/bin/dash", "sh -c cat /tmp/f | sh -i"),
    proc(801, 800, "/usr/bin/cat", "cat /tmp/f"),
    proc(802, 800, "/usr/bin/dash", "sh -i"),
    proc(803, 802, "/usr/bin/id", "id"),
]
CHANNELS = [*BASE_STDIO, stdio(802, 0, "pipe", partner=801), stdio(801, 1, "pipe", partner=802)]


def test_trace_has_ancestry_descendants_and_ipc_edges() -> None:
    trace = build_trace(snapshot(PIPELINE, CHANNELS), 802)
    roles = {n.pid: n.role for n in trace.nodes}
    assert roles == {
        1: "ancestor",
        500: "ancestor",
        600: "ancestor",
        601: "ancestor",
        800: "ancestor",
        802: "focus",
        803: "descendant",
        801: "peer",
    }
    kinds = {(e.source, e.target, e.kind) for e in trace.edges}
    assert (800, 802, "spawn") in kinds and (802, 803, "spawn") in kinds
    assert (801, 802, "pipe") in kinds  # cat feeds sh -i


def test_trace_renderings() -> None:
    trace = build_trace(snapshot(PIPELINE, CHANNELS), 802)
    text = trace.to_text()
    assert text.splitlines()[0].startswith("systemd[1]")
    assert "dash[802] * (uid=1000) sh -i" in text
    assert "⇠ pipe fd0 from cat[801]" in text
    assert "peers:" in text  # cat is a sibling, outside the focus's own ancestry
    dot = trace.to_dot()
    assert dot.startswith("digraph trace {") and "p801 -> p802 [style=dashed" in dot
    assert "p802 [label=" in dot and "color=red" in dot
    data = json.loads(trace.to_json())
    assert data["focus"] == 802 and {n["pid"] for n in data["nodes"]} >= {1, 801, 802, 803}


@pytest.mark.slow
def test_trace_of_a_live_socat_shell(engine: Engine, launch: Callable[..., Running]) -> None:
    run = launch("3")
    server, client = run.procs[0].pid, run.procs[1].pid
    shell = live.find(server, os.path.basename(SH))
    handler = live.parent_of(shell)
    trace = build_trace(live.snapshot(engine), shell)
    kinds = {(e.source, e.target, e.kind) for e in trace.edges}
    assert (handler, shell, "unix") in kinds
    assert (server, handler, "spawn") in kinds
    # The client's connection to the forked handler brings the client in as a peer.
    assert any(e.kind == "unix" and client in (e.source, e.target) for e in trace.edges)
    assert f"[{shell}] *" in trace.to_text()
