"""Scheduled hunts on SQLite and PostgreSQL: offline hosts, expiry, --diff, restarts,
two replicas, cron triggers on a controlled clock, pause/resume/cancel."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from fleetctl.cli import main
from fleetctl.server.hunts import HuntService, trigger_for
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import Hunt, HuntRun
from tests.conftest import RunningServer

# The schedule of hunts a test fires by hand: the scheduler's own slot is months away.
YEARLY = "0 0 1 1 *"


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == code, result.output
    return result.output


def hunt_id(server: RunningServer, name: str) -> int:
    engine = make_engine(server.settings.db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        found = session.scalars(select(Hunt.id).where(Hunt.name == name)).one()
    engine.dispose()
    return int(found)


def show(name: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(run("hunt", "show", name, "--format", "json"))[0]
    return shown


def answer_all(node: Any, rows: list[dict[str, str]]) -> list[str]:
    queries = node.call("/distributed/read")["queries"]
    for qid in queries:
        node.call(
            "/distributed/write",
            {"queries": {qid: rows}, "statuses": {qid: 0}, "messages": {qid: ""}},
        )
    return list(queries)


def test_a_hunt_created_while_a_host_is_offline_reaches_it_later(
    server: RunningServer,
) -> None:
    node = server.node("laptop", "u-laptop")
    node.enroll()
    run(
        "hunt",
        "create",
        "socat-hunt",
        "--sql",
        "SELECT pid FROM processes WHERE name = 'socat'",
        "--targets",
        "host:laptop",
        "--every",
        "2s",
        "--expires",
        "10m",
    )
    deadline = time.monotonic() + 15
    while not show("socat-hunt")["runs"]:  # the scheduler fires the first run
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert show("socat-hunt")["runs"][0]["queued"] == 1
    server.thread.state.reload_campaigns()
    assert answer_all(node, [{"pid": "4242"}])  # the host checks in later and answers
    assert show("socat-hunt")["runs"][0]["done"] == 1
    run("hunt", "cancel", "socat-hunt")
    assert "cancelled" in run("hunt", "list")


def test_diff_runs_and_one_firing_per_slot(server: RunningServer) -> None:
    node = server.node("db-1", "u-db-1")
    node.enroll()
    run(
        "hunt",
        "create",
        "listeners",
        "--sql",
        "SELECT pid, port FROM listening_ports",
        "--targets",
        "all",
        "--cron",
        YEARLY,
    )
    service = server.thread.state.hunts
    assert service is not None
    hid = hunt_id(server, "listeners")
    t0 = int(time.time())
    assert service.fire(hid, now=t0) == 1
    assert service.fire(hid, now=t0 + 10) is None  # same slot: refused
    answer_all(node, [{"pid": "1", "port": "22"}])
    assert service.fire(hid, now=t0 + 3600) == 2
    answer_all(node, [{"pid": "1", "port": "22"}, {"pid": "7", "port": "4444"}])

    def ports(*extra: str) -> list[str]:
        out = run("hunt", "results", "listeners", "--format", "json", *extra)
        rows = json.loads(out.split("\n(")[0])
        return sorted(r["port"] for r in rows)

    assert ports() == ["22", "4444"]
    assert ports("--diff") == ["4444"]
    assert ports("--run", "1") == ["22"]
    page = run("hunt", "results", "listeners", "--limit", "1", "--format", "json")
    assert "(1 of 2 rows; --offset 1 for more)" in page

    # Run 3 fails on the host; run 4 is compared with run 2, the last one it answered.
    assert service.fire(hid, now=t0 + 7200) == 3
    [failed] = node.call("/distributed/read")["queries"]
    node.call(
        "/distributed/write",
        {"queries": {failed: []}, "statuses": {failed: 1}, "messages": {failed: "no such table"}},
    )
    refused = CliRunner().invoke(main, ["hunt", "results", "listeners", "--run", "3"])
    assert refused.exit_code == 1  # osquery's own message, per host, and a failing status
    assert "db-1: error: no such table" in refused.stderr
    assert "1 host(s) failed to run hunt listeners run 3" in refused.stderr
    assert service.fire(hid, now=t0 + 10800) == 4
    answer_all(
        node,
        [{"pid": "1", "port": "22"}, {"pid": "7", "port": "4444"}, {"pid": "9", "port": "8080"}],
    )
    assert ports("--diff") == ["8080"]

    # The same history through the hunt_results view: each answer is current until the
    # host's next answer to the hunt.
    answer = server.admin().post(
        "/api/v1/admin/sql",
        json={
            "sql": """
        SELECT run, columns ->> 'port' AS port, first_seen, removed_at FROM hunt_results
        WHERE hunt = 'listeners' ORDER BY run, port"""
        },
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["rows"]
    assert [(r["run"], r["port"]) for r in rows] == [
        (1, "22"),
        (2, "22"),
        (2, "4444"),
        (4, "22"),
        (4, "4444"),
        (4, "8080"),
    ]
    by_run = {r["run"]: r for r in rows}
    assert by_run[1]["removed_at"] == by_run[2]["first_seen"]
    assert by_run[2]["removed_at"] == by_run[4]["first_seen"]
    assert by_run[4]["removed_at"] is None


def test_pages_of_results_cover_every_row_once(server: RunningServer) -> None:
    nodes = [server.node(f"page-{i}", f"u-page-{i}") for i in range(3)]
    for node in nodes:
        node.enroll()
    run("hunt", "create", "paged", "--sql", "SELECT 1 AS one", "--cron", YEARLY)
    service = server.thread.state.hunts
    assert service is not None
    assert service.fire(hunt_id(server, "paged")) == 1
    for i, node in enumerate(reversed(nodes)):
        answer_all(node, [{"n": f"{i}-{k}"} for k in range(3)])
    admin = server.admin()

    def page(offset: int, limit: int) -> dict[str, Any]:
        got = admin.get(
            "/api/v1/admin/hunts/paged/results", params={"offset": offset, "limit": limit}
        )
        assert got.status_code == 200, got.text
        return dict(got.json())

    everything = page(0, 100)
    assert everything["total"] == 9
    assert [r["host"] for r in everything["rows"]] == sorted(
        f"page-{i}" for i in range(3) for _ in range(3)
    )
    assert [r["n"] for r in everything["rows"][:3]] == ["2-0", "2-1", "2-2"]  # as answered
    pages = [page(offset, 2) for offset in range(0, 9, 2)]
    assert [r for p in pages for r in p["rows"]] == everything["rows"]
    assert admin.get("/api/v1/admin/hunts/paged/results", params={"limit": 0}).status_code == 400


def test_runs_expire(server: RunningServer) -> None:
    node = server.node("gone", "u-gone")
    node.enroll()
    run(
        "hunt",
        "create",
        "short",
        "--sql",
        "SELECT 1 AS one",
        "--targets",
        "host:gone",
        "--every",
        "1h",
        "--expires",
        "1s",
    )
    service = server.thread.state.hunts
    assert service is not None
    service.fire(hunt_id(server, "short"))
    time.sleep(1.5)
    server.thread.state.reload_campaigns()
    assert node.call("/distributed/read")["queries"] == {}
    assert show("short")["runs"][0]["expired"] == 1


def test_hunts_survive_a_restart(db_url: str, tmp_path: Path, monkeypatch: Any) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("FLEETCTL_HOME", str(home))
    first = RunningServer(home, db_url)
    run("hunt", "create", "nightly", "--sql", "SELECT 1 AS one", "--cron", "0 3 * * *")
    assert first.thread.state.hunts is not None
    before = first.thread.state.hunts.scheduler.get_job(f"hunt-{hunt_id(first, 'nightly')}")
    assert before is not None
    planned = before.next_run_time
    first.stop()
    second = RunningServer(home, db_url)
    try:
        assert second.thread.state.hunts is not None
        job = second.thread.state.hunts.scheduler.get_job(f"hunt-{hunt_id(second, 'nightly')}")
        assert job is not None and job.next_run_time == planned
        assert planned.hour == 3 and planned.minute == 0
    finally:
        second.stop()


def test_two_replicas_fire_a_slot_once(server: RunningServer) -> None:
    run("hunt", "create", "twice", "--sql", "SELECT 1 AS one", "--cron", YEARLY)
    hid = hunt_id(server, "twice")
    other_engine = make_engine(server.settings.db_url)
    replicas = [
        server.thread.state.hunts,
        HuntService(
            other_engine,
            make_sessionmaker(other_engine),
            server.thread.state.campaigns,
            server.settings.home,
        ),
    ]
    now = int(time.time())
    results: list[int | None] = []
    threads = [
        threading.Thread(target=lambda r=r: results.append(r.fire(hid, now=now)))
        for r in replicas
        if r is not None
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == [1, None]
    with session_scope(make_sessionmaker(other_engine)) as session:
        assert len(session.scalars(select(HuntRun).where(HuntRun.hunt_id == hid)).all()) == 1
    other_engine.dispose()


def test_cron_trigger_on_a_controlled_clock() -> None:
    trigger = trigger_for("cron", "*/15 * * * *", 0)
    start = dt.datetime(2026, 11, 28, 10, 7, tzinfo=dt.UTC)
    first = trigger.get_next_fire_time(None, start)
    assert first == dt.datetime(2026, 11, 28, 10, 15, tzinfo=dt.UTC)
    assert trigger.get_next_fire_time(first, first + dt.timedelta(seconds=1)) == (
        dt.datetime(2026, 11, 28, 10, 30, tzinfo=dt.UTC)
    )
    interval = trigger_for("every", "600", 0)
    later = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    one = interval.get_next_fire_time(None, later)
    two = interval.get_next_fire_time(one, one + dt.timedelta(seconds=1))
    assert one is not None and two is not None and two - one == dt.timedelta(seconds=600)


def test_bad_hunts_are_refused(server: RunningServer) -> None:
    assert "give exactly one of --cron" in run("hunt", "create", "x", "--sql", "SELECT 1", code=2)
    bad_cron = run("hunt", "create", "x", "--sql", "SELECT 1", "--cron", "0 * * *", code=1)
    assert "got 4, expected 5" in bad_cron  # what is wrong
    assert "e.g. '0 */6 * * *'" in bad_cron  # and a valid example
    assert "does not validate" in run(
        "hunt", "create", "x", "--sql", "SELECT nope FROM x", "--once", code=1
    )
    run("hunt", "create", "paused-one", "--sql", "SELECT 1 AS one", "--every", "1h")
    assert "paused" in run("hunt", "pause", "paused-one")
    service = server.thread.state.hunts
    assert service is not None
    assert service.fire(hunt_id(server, "paused-one")) is None  # paused hunts do not fire
    assert "active" in run("hunt", "resume", "paused-one")


def test_an_interval_hunt_runs_at_once_then_every_interval(server: RunningServer) -> None:
    run("hunt", "create", "hourly", "--sql", "SELECT 1 AS one", "--every", "1h")
    deadline = time.monotonic() + 10
    while not show("hourly")["runs"]:  # not an hour from now
        assert time.monotonic() < deadline, "an interval hunt's first run is at creation"
        time.sleep(0.2)
    [listed] = json.loads(run("hunt", "list", "--format", "json"))
    assert listed["schedule"] == "every 1h" and listed["runs"] == 1
    first = dt.datetime.fromisoformat(listed["last_run"].replace("Z", "+00:00"))
    following = dt.datetime.fromisoformat(listed["next_run"].replace("Z", "+00:00"))
    assert dt.timedelta(minutes=59) <= following - first <= dt.timedelta(minutes=61)
    run("hunt", "pause", "hourly")
    assert json.loads(run("hunt", "list", "--format", "json"))[0]["next_run"] is None


def test_results_of_a_hunt_that_has_not_run_say_so(server: RunningServer) -> None:
    run("hunt", "create", "nightly", "--sql", "SELECT 1 AS one", "--cron", "0 3 * * *")
    assert "hunt nightly has not run yet" in run("hunt", "results", "nightly", code=1)
    [listed] = json.loads(run("hunt", "list", "--format", "json"))
    assert listed["next_run"].endswith("T03:00:00Z") and listed["last_run"] is None
    assert "no hunt 'nope'" in run("hunt", "results", "nope", code=1)


def test_one_leader_fires_and_another_takes_over(db_url: str, tmp_path: Path) -> None:
    """Only the process holding the lock (an advisory lock on PostgreSQL, a file lock in
    the home on SQLite) resumes its scheduler; when it stops, another becomes the leader."""
    from fleetctl.server.campaign_queue import CampaignQueue

    engines = [make_engine(db_url), make_engine(db_url)]
    replicas = [HuntService(e, make_sessionmaker(e), CampaignQueue(), tmp_path) for e in engines]
    try:
        for replica in replicas:
            replica.start()
        deadline = time.monotonic() + 10
        while not any(r.leader for r in replicas):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(2.5)  # the other replica has retried at least once by now
        assert sum(r.leader for r in replicas) == 1
        leader = next(r for r in replicas if r.leader)
        follower = next(r for r in replicas if not r.leader)
        leader.stop()
        deadline = time.monotonic() + 10
        while not follower.leader:
            assert time.monotonic() < deadline, "no replica took over"
            time.sleep(0.1)
    finally:
        for replica in replicas:
            replica.stop()
        for engine in engines:
            engine.dispose()


def test_a_hunt_reaches_a_host_that_enrolls_after_it_fired(server: RunningServer) -> None:
    first = server.node("early", "u-early")
    first.enroll()
    run(
        "hunt",
        "create",
        "all-hosts",
        "--sql",
        "SELECT 1 AS one",
        "--targets",
        "all",
        "--cron",
        YEARLY,
        "--expires",
        "10m",
    )
    service = server.thread.state.hunts
    assert service is not None
    assert service.fire(hunt_id(server, "all-hosts")) == 1
    late = server.node("late-comer", "u-late-comer")
    late.enroll()  # enrolls after the run fired: it joins the open run
    assert answer_all(late, [{"one": "1"}])
    rows = json.loads(run("hunt", "results", "all-hosts", "--format", "json"))
    assert rows == [{"host": "late-comer", "one": "1"}]
    assert show("all-hosts")["runs"][0]["queued"] + show("all-hosts")["runs"][0]["sent"] == 1


def test_replicas_share_hunts_and_live_queries(
    server: RunningServer, db_url: str, tmp_path: Path
) -> None:
    """Two servers on one PostgreSQL: a host enrolled through one checks in at the other
    and gets the hunt run and the live query started through the first; its answers are
    seen through the first, and the hunt fired once."""
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL store")
    from tests.osquery_node import OsqueryNode

    replica = server.replica(tmp_path / "replica")
    try:
        node = server.node("roamer", "u-roamer")
        node.enroll()
        at_replica = OsqueryNode(replica.url, replica.ca, replica.secret, "roamer", "u-roamer")
        at_replica.node_key = node.node_key

        def read_at_replica() -> list[str]:
            deadline = time.monotonic() + 15  # the replica reloads its queue every few seconds
            while not (queries := at_replica.call("/distributed/read")["queries"]):
                assert time.monotonic() < deadline, "the replica never handed out the query"
                time.sleep(0.3)
            return list(queries)

        run("hunt", "create", "shared", "--sql", "SELECT 1 AS one", "--every", "1h")
        [qid] = read_at_replica()
        at_replica.call(
            "/distributed/write",
            {"queries": {qid: [{"one": "1"}]}, "statuses": {qid: 0}, "messages": {qid: ""}},
        )
        assert json.loads(run("hunt", "results", "shared", "--format", "json")) == [
            {"host": "roamer", "one": "1"}
        ]
        time.sleep(3)  # both schedulers have had their chance; only the leader fires
        assert show("shared")["runs"] == [
            {
                "run": 1,
                "fired": show("shared")["runs"][0]["fired"],
                "queued": 0,
                "sent": 0,
                "done": 1,
                "failed": 0,
                "expired": 0,
                "skipped": 0,
            }
        ]

        cid = (
            server.admin()
            .post("/api/v1/admin/queries", json={"sql": "SELECT 2 AS two"})
            .json()["id"]
        )
        [qid] = read_at_replica()
        assert qid == f"fleetctl_campaign_{cid}"
        at_replica.call(
            "/distributed/write",
            {"queries": {qid: [{"two": "2"}]}, "statuses": {qid: 0}, "messages": {qid: ""}},
        )
        status = server.admin().get(f"/api/v1/admin/queries/{cid}").json()
        assert status["answered"] == 1 and status["hosts"][0]["rows"] == [{"two": "2"}]
        at_replica.close()
    finally:
        replica.stop()
