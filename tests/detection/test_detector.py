"""Differential detection: learning windows, host vs fleet newness, dedup, state."""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import pytest

from fleetctl.detection import (
    Baseline,
    DetectionState,
    Detector,
    ExecutionPath,
    build_paths,
    finding_id,
)
from fleetctl.detection import detector as detector_module
from tests.detection.rows import BASE, BASE_STDIO, Row, proc, snapshot, stdio

DAY = 86400.0


def host_paths(
    host: str, extra: Sequence[Row] = (), channels: Sequence[Row] = ()
) -> list[ExecutionPath]:
    return build_paths(snapshot(BASE + list(extra), BASE_STDIO + list(channels), host=host))


REVERSE_SHELL = [
    proc(2000, 700, "/usr/bin/dash", "/bin/sh -i", uid=33),
    proc(2001, 700, "/usr/bin/dash", "/bin/sh -i", uid=33),
]
TCP = [
    stdio(pid, fd, "tcp", "10.0.0.5:4000->203.0.113.9:4444", mode="rw")
    for pid in (2000, 2001)
    for fd in (0, 1, 2)
]


def test_learning_window_then_new_paths_alert() -> None:
    detector = Detector(Baseline.default(), learning_window=DAY)
    assert detector.detect(host_paths("web-1"), now=0.0) == []
    # Still inside the window: an ordinary new path only teaches.
    uname = [proc(2100, 700, "/usr/bin/uname", "uname -a", uid=33)]
    assert detector.detect(host_paths("web-1", uname), now=DAY / 2) == []
    detector = Detector(Baseline.default(), learning_window=DAY)
    detector.detect(host_paths("web-1"), now=0.0)
    (finding,) = detector.detect(host_paths("web-1", REVERSE_SHELL, TCP), now=2 * DAY)
    assert finding.key == "dash|33|python3.11|systemd|tcp"
    assert finding.pids == (2000, 2001)  # two processes, one finding
    assert finding.severity in ("high", "critical")
    assert finding.new_on_host and finding.new_on_fleet
    assert not finding.seen_during_learning
    assert finding.id == finding_id("web-1", finding.key)
    assert [r.pid for r in finding.evidence.lineage] == [2000, 700, 1]
    assert finding.evidence.channels[0].target == "10.0.0.5:4000->203.0.113.9:4444"


def test_an_attack_during_the_learning_window_is_not_learned() -> None:
    """A reverse shell present while the host learns is a finding marked as seen during
    learning, and a later process on the same path is a new occurrence of it."""
    detector = Detector(learning_window=DAY)
    detector.detect(host_paths("web-1"), now=0.0)
    (first,) = detector.detect(host_paths("web-1", REVERSE_SHELL[:1], TCP), now=DAY / 2)
    assert first.is_new and first.seen_during_learning
    assert [(o.pid, o.seen_during_learning) for o in first.occurrences] == [(2000, True)]
    assert first.severity in ("high", "critical")
    later = [proc(2001, 700, "/usr/bin/dash", "/bin/sh -i", uid=33, start=5000)]
    socket = [
        stdio(2001, fd, "tcp", "10.0.0.5:4001->203.0.113.9:4444", start=5000) for fd in (0, 1, 2)
    ]
    (again,) = detector.detect(host_paths("web-1", later, socket), now=2 * DAY)
    assert again.id == first.id and not again.is_new
    assert [(o.pid, o.start_time, o.seen_during_learning) for o in again.occurrences] == [
        (2001, 5000, False)
    ]


def test_explicit_learning_refuses_attacks_unless_accepted() -> None:
    detector = Detector(learning_window=30 * DAY)
    learned = detector.learn(host_paths("web-1", REVERSE_SHELL, TCP), now=0.0)
    (refused,) = learned.refused
    assert refused.key == "dash|33|python3.11|systemd|tcp" and refused.seen_during_learning
    assert ("web-1", refused.key) not in learned.keys
    assert ("web-1", "bash|500|sshd|sshd|pty") in learned.new_keys
    # Seen again after learning: the same finding, not a known path.
    (again,) = detector.detect(host_paths("web-1", REVERSE_SHELL, TCP), now=1.0)
    assert again.id == refused.id and not again.is_new
    accepting = Detector(learning_window=30 * DAY)
    learned = accepting.learn(
        host_paths("web-1", REVERSE_SHELL, TCP), now=0.0, accept={refused.key}
    )
    assert learned.refused == () and learned.accepted == (("web-1", refused.key),)


def test_a_learned_key_does_not_vouch_for_an_attack_on_it() -> None:
    """The key of a harmless process, learned, stays a finding when an instance of it
    looks like an attack on its own (here: stdin from a FIFO in /tmp)."""
    detector = Detector(learning_window=DAY)
    quiet = [proc(2300, 601, "/usr/bin/dash", "sh")]
    fifo = [stdio(2300, 0, "fifo", "/home/alice/.cache/q", mode="r")]
    assert detector.learn(host_paths("web-1", quiet, [*BASE_STDIO, *fifo]), now=0.0).refused
    assert detector.detect(host_paths("web-1", quiet, [*BASE_STDIO, *fifo]), now=1.0) != []


def test_occurrences_keep_each_process_and_its_evidence() -> None:
    detector = Detector(learning_window=0)
    (finding,) = detector.detect(host_paths("web-1", REVERSE_SHELL, TCP), now=10.0)
    assert [(o.pid, o.start_time) for o in finding.occurrences] == [(2000, 1000), (2001, 1000)]
    assert [o.evidence.lineage[0].pid for o in finding.occurrences] == [2000, 2001]
    doc = finding.occurrence_document(finding.occurrences[1])
    assert (doc["pid"], doc["key"], doc["evidence"]["lineage"][0]["pid"]) == (
        2001,
        finding.key,
        2001,
    )
    assert {r["code"]: r["novelty"] for r in doc["reasons"]}["child_shell"] is False


def test_explicit_learning_skips_the_window_and_known_paths_stay_quiet() -> None:
    detector = Detector(learning_window=30 * DAY)
    detector.learn(host_paths("web-1"), now=0.0)
    assert detector.detect(host_paths("web-1"), now=1.0) == []
    found = detector.detect(host_paths("web-1", REVERSE_SHELL, TCP), now=2.0)
    assert [f.child for f in found] == ["dash"]


def test_again_seen_findings_keep_their_id_and_first_seen() -> None:
    detector = Detector(learning_window=0)
    (first,) = detector.detect(host_paths("web-1", REVERSE_SHELL, TCP), now=10.0)
    (again,) = detector.detect(host_paths("web-1", REVERSE_SHELL, TCP), now=70.0)
    assert (again.id, again.first_seen, again.last_seen) == (first.id, 10.0, 70.0)
    assert first.is_new and not again.is_new
    assert detector.state.findings[first.id].last_seen == 70.0


def test_new_on_host_but_known_on_fleet_and_prevalence() -> None:
    detector = Detector(learning_window=0)
    for host in ("a", "b", "c"):
        detector.learn(host_paths(host), now=0.0)
    (on_a,) = detector.detect(host_paths("a", REVERSE_SHELL, TCP), now=1.0)
    assert on_a.new_on_fleet and on_a.prevalence.hosts_with_key == 1
    assert on_a.prevalence.hosts_total == 3
    (on_b,) = detector.detect(host_paths("b", REVERSE_SHELL, TCP), now=2.0)
    assert on_b.new_on_host and not on_b.new_on_fleet
    assert on_b.prevalence.hosts_with_key == 2
    assert on_a.score > on_b.score  # rarer ranks higher


def test_baseline_learned_keys_count_as_known() -> None:
    """An admin's accepted key quiets even a path that looks like an attack."""
    baseline = Baseline.default()
    baseline.learned.fleet.add("dash|33|python3.11|systemd|tcp")
    detector = Detector(baseline, learning_window=0)
    assert detector.detect(host_paths("web-1", REVERSE_SHELL, TCP), now=1.0) == []
    assert detector.learn(host_paths("web-1", REVERSE_SHELL, TCP), now=2.0).refused == ()


def test_min_severity_filters_but_still_learns() -> None:
    detector = Detector(learning_window=0, min_severity="high")
    low = [proc(2100, 700, "/usr/bin/uname", "uname -a", uid=33)]
    assert detector.detect(host_paths("web-1", low), now=1.0) == []
    assert "uname|33|python3.11|systemd|-" in detector.state.hosts["web-1"].keys


def test_parent_history_feeds_the_never_started_signal() -> None:
    detector = Detector(learning_window=0)
    worker = [proc(2200, 700, "/usr/bin/convert", "convert a.png b.jpg", uid=33)]
    detector.learn(host_paths("web-1", worker), now=0.0)
    (finding,) = detector.detect(host_paths("web-1", REVERSE_SHELL[:1]), now=1.0)
    assert "parent_new_child_class" in {r.code for r in finding.reasons}


def test_state_round_trips_through_json() -> None:
    detector = Detector(learning_window=0)
    detector.learn(host_paths("a"), now=0.0)
    detector.detect(host_paths("a", REVERSE_SHELL, TCP), now=5.0)
    data = json.loads(json.dumps(detector.state.to_dict()))
    restored = DetectionState.from_dict(data)
    assert restored == detector.state
    again = Detector(learning_window=0, state=restored)
    (finding,) = again.detect(host_paths("a", REVERSE_SHELL, TCP), now=9.0)
    assert not finding.is_new and finding.first_seen == 5.0
    assert restored.learned_keys().hosts["a"] >= {"dash|33|python3.11|systemd|tcp"}


def test_finding_to_dict_is_json_ready() -> None:
    detector = Detector(learning_window=0)
    (finding,) = detector.detect(host_paths("a", REVERSE_SHELL, TCP), now=5.0)
    data = json.loads(json.dumps(finding.to_dict()))
    assert data["evidence"]["lineage"][0]["cmdline"] == "/bin/sh -i"
    assert data["evidence"]["cmdlines"][:2] == ["/bin/sh -i", "python3 app.py"]
    assert {r["code"] for r in data["reasons"]} >= {"child_shell", "feed_tcp"}
    lines = finding.evidence.lines()
    assert lines[0] == "lineage:" and any(line.startswith("fd 0: tcp") for line in lines)


def test_interpreter_parents_are_remembered_per_app() -> None:
    """pytest starting shells must not make a python web server's shell expected."""
    from fleetctl.detection.detector import app_name

    names = ("python3.11",)
    assert app_name("python3.11", names, "python3 -m http.server --cgi", "linux") == (
        "python3.11 http.server"
    )
    assert (
        app_name("python3.11", names, "/usr/bin/python3 /opt/app/manage.py run", "linux")
        == "python3.11 manage.py"
    )
    assert app_name("python3.11", names, "python3 -c print(1)", "linux") == "python3.11 -c"
    assert app_name("sshd", ("sshd",), "sshd: root@pts/0", "linux") == "sshd"


def test_unchanged_paths_of_a_known_key_are_not_scored_unless_another_makes_it_a_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``unchanged`` paths were judged before under their key: a known key that is no
    finding is left alone (its unchanged paths not scored again), unless one of its other
    paths looks like an attack on its own; then the finding is what judging every path
    as new gives."""
    detector = Detector(learning_window=DAY)
    detector.detect(host_paths("web-1"), now=0.0)
    paths = host_paths("web-1", REVERSE_SHELL, TCP)
    shells = [p for p in paths if p.child.pid in (2000, 2001)]
    key = shells[0].path_key()
    plain = Detector(learning_window=DAY, state=copy.deepcopy(detector.state))
    plain.state.see("web-1", key, 1.0)  # known on the host, and no finding
    hinted = Detector(learning_window=DAY, state=copy.deepcopy(plain.state))
    (expected,) = plain.detect(paths, now=2 * DAY)
    (found,) = hinted.detect(paths, now=2 * DAY, unchanged=[shells[0]])
    assert found.to_dict() == expected.to_dict()
    assert [o.pid for o in found.occurrences] == [2000, 2001]

    scored: list[int] = []
    real = detector_module.score_path

    def counted(path: ExecutionPath, *args: Any, **kwargs: Any) -> Any:
        scored.append(path.child.pid)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(detector_module, "score_path", counted)
    quiet = [p for p in host_paths("web-1") if p.child.pid != 1]
    again = Detector(learning_window=DAY, state=copy.deepcopy(detector.state))
    assert again.detect(quiet, now=2 * DAY, unchanged=quiet) == []
    assert scored == []
    assert again.detect(quiet, now=2 * DAY) == []  # the same answer, every path scored
    assert sorted(scored) == sorted(p.child.pid for p in quiet)
