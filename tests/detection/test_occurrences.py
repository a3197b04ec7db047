"""Findings keep every incident: occurrences, ack and reopen, severity of the open ones,
and the history of each change. A real server on SQLite and PostgreSQL, fed by a
simulated osqueryd that reports FIFO-fed shells on one path key."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.detection.reporting import ReportingHost, fifo_shell, wait_for

API = "/api/v1/admin"


@pytest.fixture
def judged(server: RunningServer) -> tuple[ReportingHost, httpx.Client]:
    """A host with an explicit baseline of its base tree: new paths on it are judged."""
    host = ReportingHost(server)
    host.report()
    admin = server.admin()
    learned = admin.post(f"{API}/detect", json={"learn": True}).json()
    assert learned["refused"] == [] and learned["learned_keys"]
    return host, admin


def shown(admin: httpx.Client, finding_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = admin.get(f"{API}/findings/{finding_id}").json()
    return answer


def only_finding(admin: httpx.Client) -> dict[str, Any]:
    (finding,) = admin.get(f"{API}/findings").json()["findings"]
    return dict(finding)


def report_and_wait(
    host: ReportingHost, admin: httpx.Client, occurrences: int, *shells: tuple[Any, Any]
) -> dict[str, Any]:
    """Report these shells (and nothing else new); wait for the finding to hold
    ``occurrences`` occurrences."""
    host.report(
        [p for processes, _ in shells for p in processes],
        [c for _, channels in shells for c in channels],
    )
    listed = wait_for(
        lambda: admin.get(f"{API}/findings").json()["findings"],
        lambda found: len(found) == 1 and found[0]["occurrences"] == occurrences,
    )
    return dict(listed[0])


def changes(finding: dict[str, Any]) -> list[tuple[str, str | None, str, str]]:
    return [(c["field"], c["from"], c["to"], c["by"]) for c in finding["history"]]


def test_ack_then_a_new_occurrence_reopens_and_every_incident_keeps_its_evidence(
    judged: tuple[ReportingHost, httpx.Client],
) -> None:
    host, admin = judged
    first = report_and_wait(host, admin, 1, fifo_shell(2000, 100, "/srv/q/a"))
    assert (first["status"], first["severity"], first["pid"]) == ("open", "medium", 2000)
    assert first["seen_during_learning"] is False
    # The same process seen again is the same occurrence, not a new one.
    again = report_and_wait(host, admin, 1, fifo_shell(2000, 100, "/srv/q/a"))
    assert again["id"] == first["id"]
    # Another process on the path while open: a second occurrence, severity unchanged.
    report_and_wait(host, admin, 2, fifo_shell(2003, 103, "/srv/q/d"))

    acked = admin.post(f"{API}/findings/{first['id']}/ack", json={"note": "isolated"})
    assert acked.status_code == 200, acked.text
    assert (acked.json()["finding"]["status"], acked.json()["finding"]["acked_by"]) == (
        "acked",
        "admin",
    )
    assert admin.get(f"{API}/findings", params={"status": "open"}).json()["findings"] == []

    # A new incident (another pid, another FIFO) after the ack reopens the finding.
    reopened = report_and_wait(host, admin, 3, fifo_shell(2001, 101, "/srv/q/b"))
    assert (reopened["status"], reopened["severity"], reopened["pid"]) == (
        "reopened",
        "medium",
        2001,
    )
    assert (
        reopened["acked_by"] == "admin"
        and reopened["acked_at"] == acked.json()["finding"]["acked_at"]
    )
    listed_open = admin.get(f"{API}/findings", params={"status": "open"}).json()["findings"]
    assert [f["id"] for f in listed_open] == [first["id"]]

    # A more severe open occurrence raises the finding; the same pid with another start
    # time is another process (pids are reused).
    raised = report_and_wait(host, admin, 4, fifo_shell(2002, 102, "/dev/shm/.c", interactive=True))
    assert raised["severity"] == "critical" and raised["pid"] == 2002
    report_and_wait(host, admin, 5, fifo_shell(2000, 200, "/srv/q/e"))

    finding = shown(admin, first["id"])
    assert finding["finding"]["note"] == "isolated"
    assert [
        (o["pid"], o["start_time"], o["severity"], o["status"]) for o in finding["occurrences"]
    ] == [
        (2000, 200, "medium", "open"),
        (2002, 102, "critical", "open"),
        (2001, 101, "medium", "open"),
        (2003, 103, "medium", "acked"),
        (2000, 100, "medium", "acked"),
    ]
    targets = {
        (o["pid"], o["start_time"]): (
            o["evidence"]["lineage"][0]["pid"],
            o["evidence"]["channels"][0]["target"],
        )
        for o in finding["occurrences"]
    }
    assert targets == {
        (2000, 200): (2000, "/srv/q/e"),
        (2002, 102): (2002, "/dev/shm/.c"),
        (2001, 101): (2001, "/srv/q/b"),
        (2003, 103): (2003, "/srv/q/d"),
        (2000, 100): (2000, "/srv/q/a"),
    }
    assert changes(finding) == [
        ("status", None, "open", "detection"),
        ("severity", None, "medium", "detection"),
        ("status", "open", "acked", "admin"),
        ("status", "acked", "reopened", "detection"),
        ("severity", "medium", "critical", "detection"),
    ]
    assert finding["history"][2]["note"] == "isolated"

    # Acked again, then a medium incident: the finding is as severe as its open ones.
    admin.post(f"{API}/findings/{first['id']}/ack", json={}).raise_for_status()
    dropped = report_and_wait(host, admin, 6, fifo_shell(2004, 104, "/srv/q/f"))
    assert (dropped["status"], dropped["severity"]) == ("reopened", "medium")
    assert changes(shown(admin, first["id"]))[-3:] == [
        ("status", "reopened", "acked", "admin"),
        ("status", "acked", "reopened", "detection"),
        ("severity", "critical", "medium", "detection"),
    ]


def test_list_says_how_many_occurrences_and_since_when(
    judged: tuple[ReportingHost, httpx.Client],
) -> None:
    host, admin = judged
    report_and_wait(
        host, admin, 2, fifo_shell(2000, 100, "/srv/q/a"), fifo_shell(2001, 100, "/srv/q/b")
    )
    finding = only_finding(admin)
    assert finding["occurrences"] == 2 and finding["last_occurrence"] is not None
    newer = admin.get(
        f"{API}/findings", params={"occurred_since": finding["last_occurrence"]}
    ).json()["findings"]
    assert sorted(o["pid"] for o in newer[0]["occurrences_since"]) == [2000, 2001]
    later = admin.get(f"{API}/findings", params={"occurred_since": "9999-01-01T00:00:00Z"})
    assert later.json()["findings"] == []


def test_occurrences_since_are_capped_per_finding_newest_first(
    judged: tuple[ReportingHost, httpx.Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.findings

    host, admin = judged
    report_and_wait(
        host,
        admin,
        3,
        fifo_shell(2000, 100, "/srv/q/a"),
        fifo_shell(2001, 100, "/srv/q/b"),
        fifo_shell(2002, 100, "/srv/q/c"),
    )
    monkeypatch.setattr(storage.findings, "SINCE_LIMIT", 2)
    finding = only_finding(admin)
    listed = admin.get(f"{API}/findings", params={"occurred_since": "1970-01-01T00:00:00Z"})
    occurrences = listed.json()["findings"][0]["occurrences_since"]
    assert finding["occurrences"] == 3 and len(occurrences) == 2
    times = [o["first_seen"] for o in occurrences]
    assert times == sorted(times, reverse=True)


def test_suppress_makes_the_path_a_baseline_entry(
    judged: tuple[ReportingHost, httpx.Client],
) -> None:
    host, admin = judged
    finding = report_and_wait(host, admin, 1, fifo_shell(2000, 100, "/srv/q/a"))
    answer = admin.post(f"{API}/findings/{finding['id']}/suppress", json={"note": "backup job"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["finding"]["status"] == "suppressed"
    baseline = admin.get(f"{API}/baseline").json()["yaml"]
    assert finding["key"] in baseline
    # The accepted path makes no new occurrence, and the finding stays suppressed.
    host.report(*fifo_shell(2001, 101, "/dev/shm/.x", interactive=True))
    admin.post(f"{API}/detect", json={}).raise_for_status()
    after = only_finding(admin)
    assert (after["status"], after["occurrences"]) == ("suppressed", 1)


def test_occurrences_are_a_hunting_view(judged: tuple[ReportingHost, httpx.Client]) -> None:
    """Analyst SQL reads them (on PostgreSQL as the analyst role, on SQLite guarded)."""
    host, admin = judged
    finding = report_and_wait(host, admin, 1, fifo_shell(2000, 100, "/srv/q/a"))

    def sql(query: str) -> list[dict[str, Any]]:
        answer = admin.post(f"{API}/sql", json={"sql": query})
        assert answer.status_code == 200, answer.text
        rows: list[dict[str, Any]] = answer.json()["rows"]
        return rows

    assert sql(
        "SELECT o.finding_id, o.host, o.pid, o.start_time, f.status, f.seen_during_learning"
        " FROM hunt_finding_occurrences o JOIN hunt_findings f ON f.id = o.finding_id"
    ) == [
        {
            "finding_id": finding["id"],
            "host": "jumpvm",
            "pid": 2000,
            "start_time": 100,
            "status": "open",
            "seen_during_learning": False,
        }
    ]
