"""The telemetry answer of triage: whether the host's process and IPC queries kept running
through the window. They are differential (logged only on change), so a quiet query
is proven to have run only by the host's schedule report (``schedule_health``)."""

from __future__ import annotations

from fleetctl.detection.triage import Chain, Facts, Subject
from fleetctl.detection.triage.aftermath import telemetry
from fleetctl.detection.triage.facts import GAP_GRACE
from fleetctl.timeutil import iso

START = 1_000_000
WINDOW = 600
END = START + WINDOW


def facts(now: int, last_runs: dict[str, int], schedule_at: int | None = None) -> Facts:
    subject = Subject("web-1", 4242, START, START, "python3", "sh")
    return Facts(
        subject=subject,
        snapshot=None,
        chain=Chain(),
        window=WINDOW,
        now=now,
        last_runs=last_runs,
        schedule_at=schedule_at,
    )


def test_a_query_that_logged_after_the_window_ran_through_it() -> None:
    answer = telemetry(facts(END + 3600, {"process_lineage": END + 60}))
    assert answer.status == "answered" and answer.answer.startswith("yes:")


def test_a_quiet_differential_query_without_a_schedule_report_is_not_called_stopped() -> None:
    answer = telemetry(facts(END + 3600, {"process_lineage": START - 30}))
    assert answer.status == "partial"
    assert "logged nothing since before the window's end (process_lineage)" in answer.answer
    assert "schedule_health" in answer.why and "stopped" not in answer.answer


def test_a_schedule_report_after_the_window_that_says_it_ran_answers_yes() -> None:
    # What the loader merges: the schedule's last_executed beats the old last result.
    answer = telemetry(facts(END + 3600, {"process_lineage": END + 3000}, END + 3100))
    assert answer.status == "answered"
    assert {"role": "schedule report", "at": iso(END + 3100)} in answer.evidence


def test_a_schedule_report_that_says_it_did_not_run_is_a_stopped_query() -> None:
    answer = telemetry(facts(END + 3600, {"stdio_channels": START - 30}, END + GAP_GRACE + 1))
    assert answer.status == "partial"
    assert "1 query(ies) last ran before the window's end (stdio_channels)" in answer.answer
    assert "schedule report says they stopped" in answer.why


def test_a_report_too_soon_after_the_window_proves_nothing_yet() -> None:
    answer = telemetry(facts(END + 3600, {"stdio_channels": START - 30}, END + 10))
    assert answer.status == "partial" and "logged nothing since" in answer.answer
