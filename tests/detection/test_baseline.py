"""The baseline file: shipped defaults, round trip, ``extends: default``, strictness."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetctl.detection import Baseline, BaselineError
from fleetctl.detection.baseline import DEFAULT_PATH


def test_shipped_defaults_cover_the_benign_look_alikes(baseline: Baseline) -> None:
    names = {rule.name for rule in baseline.parent_child}
    assert {
        "terminal-multiplexers",
        "ssh-sessions",
        "service-managers",
        "cron",
        "dbus-helpers",
        "package-managers",
        "container-shims",
        "build-tools",
        "ci-pipe-to-shell",
        "editors-language-servers",
        "gpg-agent",
    } <= names
    assert baseline.expected_socket("/run/systemd/journal/stdout", ["systemd-journald"])
    assert baseline.expected_socket("/run/systemd/journal/stdout", ["socat"]) is None
    assert baseline.expected_socket("/tmp/tmux-1000/default", ["tmux: server", "tmux"])
    assert baseline.expected_fifo("/tmp/GMfifo123", ["make"])
    assert baseline.expected_fifo("/run/containerd/fifo/1234/abc-stdout", ["nginx"])
    assert baseline.expected_fifo("/dev/shm/.c", ["sh"]) is None
    assert baseline.learned.fleet == set()


def test_round_trip_keeps_every_entry(baseline: Baseline, tmp_path: Path) -> None:
    baseline.learned.hosts["web-1"] = {"sh|0|nginx|systemd|pipe"}
    try:
        target = tmp_path / "baseline.yaml"
        baseline.save(target)
        again = Baseline.load(target)
    finally:
        baseline.learned.hosts.pop("web-1")
    assert again.socket_paths == baseline.socket_paths
    assert again.fifo_access == baseline.fifo_access
    assert again.parent_child == baseline.parent_child
    assert again.pipe_names == baseline.pipe_names
    assert again.learned.hosts == {"web-1": {"sh|0|nginx|systemd|pipe"}}


def test_extends_default_adds_to_the_shipped_file() -> None:
    mine = Baseline.loads("""
extends: default
parent_child:
  - {name: our-app, parent: [myapp], child: [sh]}
learned:
  fleet: ["sh|0|myapp|systemd|null"]
""")
    default = Baseline.default()
    assert len(mine.parent_child) == len(default.parent_child) + 1
    assert mine.parent_child[-1].child == ("sh",)
    assert mine.learned.knows("any-host", "sh|0|myapp|systemd|null")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("socket_path: []", "unknown key(s) socket_path"),
        ("parent_child:\n  - {name: x, parnet: [a]}", "unknown key(s) parnet"),
        ("version: 2", "unsupported version"),
        ("extends: other.yaml", "only 'default'"),
        ("fifo_access: {path: /tmp/x}", "expected a list"),
        ("[1, 2]", "mapping of sections"),
        ("socket_paths: [", "not valid YAML"),
        ("parent_child:\n  - {parent: cron, child: sh}", "(parent=cron, child=sh) needs name"),
    ],
)
def test_mistakes_are_errors_not_silence(text: str, message: str) -> None:
    with pytest.raises(BaselineError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Baseline.loads(text)


def test_default_file_is_plain_yaml_with_comments() -> None:
    text = DEFAULT_PATH.read_text()
    assert text.startswith("# fleetctl default detection baseline")
    assert "extends: default" in text  # documented for admins
