"""A real idle Linux host (msticpy's osqueryd.results.log, host ``jumpvm``): its process
rows replayed run by run, learned from the first state, then detected: nothing medium+.

The log is differential (added/removed per run) and starts mid-stream, so each run's
state is the previous state with its removals and additions applied, as a store would
rebuild it. It holds cron (anacron -> run-parts -> sh /etc/cron.daily/logrotate),
``systemd --user`` and kernel threads; no path or stdio columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetctl.detection import Baseline, Detector, HostSnapshot, build_paths, score_path
from fleetctl.detection.scoring import severity_rank

LOG = (  # a copy of a real osqueryd log; see tests/fixtures/osquery-logs/SOURCES.md
    Path(__file__).resolve().parents[1]
    / "fixtures"
    / "osquery-logs"
    / "microsoft_msticpy"
    / "osqueryd.results.log"
)
QUERY = "pack_osquery-custom-pack_processes"


def states() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """(unixTime, rows present after that run) for every run of the processes query."""
    runs: dict[int, list[dict[str, object]]] = {}
    for line in LOG.read_text().splitlines():
        entry = json.loads(line)
        if entry["name"] == QUERY:
            runs.setdefault(entry["unixTime"], []).append(entry)
    present: dict[str, dict[str, str]] = {}
    for when in sorted(runs):
        entries = runs[when]
        for action in ("removed", "added"):
            for entry in entries:
                if entry["action"] == action:
                    row: dict[str, str] = entry["columns"]  # type: ignore[assignment]
                    key = json.dumps(row, sort_keys=True)
                    if action == "added":
                        present[key] = row
                    else:
                        present.pop(key, None)
        yield when, list(present.values())


@pytest.fixture(scope="module")
def runs() -> list[tuple[int, HostSnapshot]]:
    if not LOG.is_file():
        pytest.skip(f"{LOG} is not available")
    return [
        (when, HostSnapshot.from_results("jumpvm", {QUERY: rows}, observed_at=when))
        for when, rows in states()
    ]


def test_log_rows_become_paths(runs: list[tuple[int, HostSnapshot]], baseline: Baseline) -> None:
    assert len(runs) == 2
    first = runs[0][1]
    assert first.platform == "linux" and first.skipped == []
    paths = {p.child.pid: p for p in build_paths(first)}
    assert not any(p.child.basename == "kthreadd" for p in paths.values())  # kernel threads
    # /bin/sh /etc/cron.daily/logrotate under run-parts: a shell (argv[0], as the rows have
    # no path), allowed by the cron rule of the shipped baseline.
    cron_script = paths[193777]
    assert "sh" in cron_script.child.names
    score = score_path(cron_script, baseline)
    assert score.child_class == "shell" and score.allowed_by == "cron"


def test_nothing_medium_after_learning(runs: list[tuple[int, HostSnapshot]]) -> None:
    """The first run falls in the learning window; the next one is past it."""
    (first_time, _), (second_time, _) = runs
    detector = Detector(learning_window=second_time - first_time)
    findings = [f for when, snap in runs for f in detector.detect(build_paths(snap), now=when)]
    assert detector.state.hosts["jumpvm"].keys
    loud = [f for f in findings if severity_rank(f.severity) >= severity_rank("medium")]
    assert loud == [], [(f.key, [r.text for r in f.reasons]) for f in loud]


def test_nothing_medium_even_without_learning(runs: list[tuple[int, HostSnapshot]]) -> None:
    """The shipped baseline alone (cron, service managers) keeps this host quiet."""
    detector = Detector(learning_window=0)
    findings = [f for when, snap in runs for f in detector.detect(build_paths(snap), now=when)]
    assert all(severity_rank(f.severity) < severity_rank("medium") for f in findings), [
        (f.key, f.severity) for f in findings
    ]
