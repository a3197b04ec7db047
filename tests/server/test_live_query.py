"""Live queries: a real agent answers over distributed read/write; ``fleetctl query``
returns once every online target answered; errors per host are shown; an offline host
gets the query when it checks in before the expiry."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from fleetctl.agent import Agent, AgentOptions
from fleetctl.agent.engines import EmbeddedEngine
from fleetctl.cli import main
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import Campaign, Host, Hunt
from tests.conftest import RunningServer


@pytest.fixture
def agent(server: RunningServer, tmp_path: Path) -> Iterator[Agent]:
    running = Agent(
        AgentOptions(
            server=server.url,
            enroll_secret_path=server.settings.home / "enroll_secret",
            state_dir=tmp_path / "agent",
            ca=server.ca,
            flags={
                "host_identifier": "hostname",
                "distributed_interval": 1,
                "logger_tls_period": 1,
            },
        ),
        EmbeddedEngine(),
    )
    running.start()
    yield running
    running.stop()


def make_offline(server: RunningServer, identifier: str) -> None:
    engine = make_engine(server.settings.db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        session.execute(
            update(Host)
            .where(Host.host_identifier == identifier)
            .values(last_seen=int(time.time()) - 3600)
        )
    engine.dispose()


def test_live_query_returns_when_online_hosts_answered(server: RunningServer, agent: Agent) -> None:
    sleeper = server.node("sleeper", "u-sleeper")
    sleeper.enroll()
    server.thread.state.flush_checkins()
    make_offline(server, "sleeper")
    started = time.monotonic()
    result = CliRunner().invoke(
        main,
        [
            "query",
            "SELECT pid, name FROM processes WHERE pid = 1",
            "--timeout",
            "30s",
            "--format",
            "json",
        ],
    )
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("query ") and "2 targeted, 1 online" in lines[0]
    assert "answered 1 / online 1 / targeted 2" in result.output
    rows = json.loads("\n".join(line for line in lines if line.startswith(("[", " ", "{"))))
    assert len(rows) == 1 and rows[0]["pid"] == "1" and rows[0]["host"] != "sleeper"
    assert elapsed < 15, "must not wait for the timeout"

    # The offline host checks in later, before the expiry, and gets the query.
    server.thread.state.reload_campaigns()
    queries = sleeper.call("/distributed/read")["queries"]
    [(qid, sql)] = queries.items()
    assert sql == "SELECT pid, name FROM processes WHERE pid = 1"
    sleeper.call(
        "/distributed/write",
        {
            "queries": {qid: [{"pid": "1", "name": "init"}]},
            "statuses": {qid: 0},
            "messages": {qid: ""},
        },
    )
    status = server.admin().get(f"/api/v1/admin/queries/{qid.rsplit('_', 1)[1]}").json()
    assert status["answered"] == 2
    assert {h["host"]: h["state"] for h in status["hosts"]}["sleeper"] == "done"


def test_errors_per_host_are_shown(server: RunningServer, agent: Agent) -> None:
    result = CliRunner().invoke(
        main,
        [
            "query",
            "SELECT abs(-9223372036854775807 - 1) AS boom FROM processes LIMIT 1",
            "--timeout",
            "20s",
        ],
    )
    assert result.exit_code == 1
    assert "error: integer overflow" in result.output


def test_bad_sql_and_targets_are_refused(server: RunningServer) -> None:
    bad = CliRunner().invoke(main, ["query", "SELECT nope FROM processes"])
    assert bad.exit_code == 1 and "does not validate" in bad.output
    assert "  no such column: nope" in bad.output  # the reason, not only the verdict
    typo = CliRunner().invoke(main, ["query", "SELECT pid FROM processs"])
    assert "no such table: processs (did you mean processes?)" in typo.output
    unknown = CliRunner().invoke(main, ["query", "SELECT 1", "--targets", "label:none"])
    assert unknown.exit_code == 1 and "no label 'none'" in unknown.output


def test_expired_campaigns_are_not_sent(server: RunningServer) -> None:
    node = server.node("late", "u-late")
    node.enroll()
    admin: Any = server.admin()
    started = admin.post(
        "/api/v1/admin/queries",
        json={"sql": "SELECT 1 AS one", "targets": "host:late", "timeout": 1},
    )
    assert started.status_code == 200
    time.sleep(1.5)
    server.thread.state.reload_campaigns()
    assert node.call("/distributed/read")["queries"] == {}
    status = admin.get(f"/api/v1/admin/queries/{started.json()['id']}").json()
    assert [h["state"] for h in status["hosts"]] == ["expired"] and status["expired"]


def _target_state(server: RunningServer, campaign_id: int) -> tuple[str, int | None]:
    from storage.models import CampaignTarget

    engine = make_engine(server.settings.db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        [target] = session.scalars(
            select(CampaignTarget).where(CampaignTarget.campaign_id == campaign_id)
        )
        found = target.state, target.sent_at
    engine.dispose()
    return found


def test_a_query_is_handed_out_once_and_recorded_in_a_batch(server: RunningServer) -> None:
    from storage import campaigns as campaign_store

    node = server.node("busy", "u-busy")
    node.enroll()
    state = server.thread.state
    admin: Any = server.admin()
    cid = admin.post(
        "/api/v1/admin/queries", json={"sql": "SELECT 1 AS one", "targets": "host:busy"}
    ).json()["id"]
    assert list(node.call("/distributed/read")["queries"]) == [f"fleetctl_campaign_{cid}"]

    # A reload that read the database before the hand-out was written (the server's own
    # housekeeping may have written it already) must not queue it again.
    mark = state.campaigns.mark()
    with session_scope(state.sessions) as session:
        state.campaigns.load(campaign_store.pending(session, int(time.time())), mark)
    assert node.call("/distributed/read")["queries"] == {}

    state.flush_sent()
    sent, sent_at = _target_state(server, cid)
    assert sent == "sent" and sent_at is not None
    state.reload_campaigns()
    assert node.call("/distributed/read")["queries"] == {}


def test_an_answer_written_before_its_hand_out_stays_done(server: RunningServer) -> None:
    node = server.node("quick", "u-quick")
    node.enroll()
    admin: Any = server.admin()
    cid = admin.post(
        "/api/v1/admin/queries", json={"sql": "SELECT 1 AS one", "targets": "host:quick"}
    ).json()["id"]
    [qid] = node.call("/distributed/read")["queries"]
    node.call(
        "/distributed/write",
        {"queries": {qid: [{"one": "1"}]}, "statuses": {qid: 0}, "messages": {qid: ""}},
    )
    server.thread.state.flush_sent()
    done, sent_at = _target_state(server, cid)
    assert done == "done" and sent_at is not None


def test_following_a_query_fetches_answers_since_a_cursor(server: RunningServer) -> None:
    from fleetctl.cli.query import _next_since
    from storage.models import CampaignTarget

    early, late = server.node("early", "u-early"), server.node("late", "u-late")
    for node in (early, late):
        node.enroll()
    admin: Any = server.admin()
    cid = admin.post("/api/v1/admin/queries", json={"sql": "SELECT 1 AS one"}).json()["id"]

    def answer(node: Any) -> None:
        [qid] = node.call("/distributed/read")["queries"]
        node.call(
            "/distributed/write",
            {"queries": {qid: [{"one": "1"}]}, "statuses": {qid: 0}, "messages": {qid: ""}},
        )

    def follow(since: int) -> dict[str, Any]:
        response = admin.get(f"/api/v1/admin/queries/{cid}", params={"since": since})
        assert response.status_code == 200, response.text
        return dict(response.json())

    answer(early)
    first = follow(0)
    assert [h["host"] for h in first["hosts"]] == ["early"] and first["answered"] == 1
    assert first["states"] == {"done": 1, "queued": 1}
    assert _next_since(first, shown=1) == first["cursor"] - 1

    # The late answer is stamped before the cursor (a slow commit): the window misses it,
    # fewer answers are shown than answered, so the follower starts again from zero.
    answer(late)
    engine = make_engine(server.settings.db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        session.execute(
            update(CampaignTarget)
            .where(CampaignTarget.campaign_id == cid, CampaignTarget.state == "done")
            .values(done_at=CampaignTarget.done_at - 60)
        )
        session.execute(
            update(CampaignTarget)
            .where(CampaignTarget.campaign_id == cid)
            .where(CampaignTarget.host_id == first["hosts"][0]["host_id"])
            .values(done_at=int(time.time()))
        )
    engine.dispose()
    windowed = follow(first["cursor"] - 1)
    assert [h["host"] for h in windowed["hosts"]] == ["early"] and windowed["answered"] == 2
    assert _next_since(windowed, shown=1) == 0
    assert {h["host"] for h in follow(0)["hosts"]} == {"early", "late"}

    assert admin.get(f"/api/v1/admin/queries/{cid}", params={"since": "x"}).status_code == 400
    everything = admin.get(f"/api/v1/admin/queries/{cid}").json()
    assert {h["state"] for h in everything["hosts"]} == {"done"} and len(everything["hosts"]) == 2


def test_targets_are_committed_before_hosts_can_be_handed_the_query(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host polling the instant a query is queued answers at once; the answer must
    find its target row, so the queue is filled only after the commit."""
    from storage.campaigns import Pending
    from storage.models import CampaignTarget

    node = server.node("eager", "u-eager")
    node.enroll()
    queue = server.thread.state.campaigns
    add = queue.add
    visible: list[int] = []

    def add_when_committed(items: list[Pending]) -> None:
        engine = make_engine(server.settings.db_url)
        with session_scope(make_sessionmaker(engine)) as session:
            visible.append(
                len(
                    session.scalars(
                        select(CampaignTarget).where(
                            CampaignTarget.campaign_id.in_({i.campaign_id for i in items})
                        )
                    ).all()
                )
            )
        engine.dispose()
        add(items)

    monkeypatch.setattr(queue, "add", add_when_committed)
    started = server.admin().post(
        "/api/v1/admin/queries", json={"sql": "SELECT 1 AS one", "targets": "host:eager"}
    )
    assert started.status_code == 200, started.text
    assert visible == [1]


def test_an_answer_to_a_query_never_sent_is_dropped_and_logged(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    node = server.node("stray", "u-stray")
    node.enroll()
    with caplog.at_level("WARNING", logger="fleetctl.server"):
        node.call(
            "/distributed/write",
            {
                "queries": {"fleetctl_campaign_999": [{"one": "1"}]},
                "statuses": {"fleetctl_campaign_999": 0},
            },
        )
    assert (
        "dropped 1 distributed answer(s) to queries this host was not sent: "
        "'fleetctl_campaign_999'" in caplog.text
    )


def test_live_query_rows_aggregate_in_sql(server: RunningServer) -> None:
    nodes = [server.node(f"agg-{i}", f"u-agg-{i}") for i in range(2)]
    admin: Any = server.admin()
    for node in nodes:
        node.enroll()
    cid = admin.post("/api/v1/admin/queries", json={"sql": "SELECT 1 AS one"}).json()["id"]
    for i, node in enumerate(nodes):
        [qid] = node.call("/distributed/read")["queries"]
        node.call(
            "/distributed/write",
            {
                "queries": {qid: [{"port": "22"}, {"port": str(i)}]},
                "statuses": {qid: 0},
                "messages": {qid: ""},
            },
        )
    answer = admin.post(
        "/api/v1/admin/sql",
        json={
            "sql": f"""
        SELECT columns ->> 'port' AS port, count(DISTINCT host_id) AS hosts
        FROM hunt_live_results WHERE query_id = {cid} GROUP BY port ORDER BY port"""
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["rows"] == [
        {"port": "0", "hosts": 1},
        {"port": "1", "hosts": 1},
        {"port": "22", "hosts": 2},
    ]


def _report_extensions(node: Any, tables: list[str]) -> None:
    """The node reports the extension tables its osqueryd has, as telemetry-health does."""
    node.log(
        "result",
        [
            {
                "name": "pack_telemetry-health_extension_tables",
                "hostIdentifier": node.identifier,
                "unixTime": 1000,
                "counter": 0,
                "epoch": 0,
                "action": "snapshot",
                "snapshot": [{"table_name": t, "extension": "fleetctl"} for t in tables],
            }
        ],
    )


def mixed_fleet(server: RunningServer) -> dict[str, Any]:
    """web-1 with the extension, web-2 a stock osqueryd, web-3 silent about its
    extensions (given the benefit of the doubt), win-1 a Windows host."""
    nodes = {name: server.node(name, f"u-{name}") for name in ("web-1", "web-2", "web-3", "win-1")}
    windows = {"os_version": {"name": "Windows 11", "platform": "windows"}}
    nodes["win-1"].host_details = lambda: windows | {"system_info": {"uuid": "u-win-1"}}
    for node in nodes.values():
        node.enroll()
    _report_extensions(nodes["web-1"], ["process_stdio", "unix_socket_peers"])
    _report_extensions(nodes["web-2"], [])
    return nodes


def test_targets_lacking_a_table_are_listed_before_anything_is_sent(
    server: RunningServer,
) -> None:
    mixed_fleet(server)

    admin = server.admin()
    refused = admin.post("/api/v1/admin/queries", json={"sql": "SELECT pid FROM process_stdio"})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("2 of 4 targeted hosts lack a table")
    assert sorted(e["message"] for e in refused.json()["errors"]) == [
        "web-2: no table process_stdio on this linux host",
        "win-1: no table process_stdio on this windows host",
    ]
    assert server.query(select(Campaign)) == []  # nothing was sent
    cli = CliRunner().invoke(main, ["query", "SELECT pid FROM process_stdio"])
    assert cli.exit_code == 1 and "web-2: no table process_stdio" in cli.output
    sent = admin.post(
        "/api/v1/admin/queries",
        json={"sql": "SELECT pid FROM process_stdio", "skip_missing": True, "timeout": 1},
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["targeted"] == 2


LACKING = [
    "web-2: no table process_stdio on this linux host",
    "win-1: no table process_stdio on this windows host",
]


def test_hunts_check_their_targets_tables_and_skip_the_hosts_lacking_one(
    server: RunningServer,
) -> None:
    nodes = mixed_fleet(server)
    admin = server.admin()
    hunt = {"name": "stdio", "sql": "SELECT pid FROM process_stdio", "cron": "0 0 1 1 *"}
    refused = admin.post("/api/v1/admin/hunts", json=hunt)
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("2 of 4 targeted hosts lack a table the hunt reads")
    assert sorted(e["message"] for e in refused.json()["errors"]) == LACKING
    assert server.query(select(Hunt)) == []
    cli = CliRunner().invoke(main, ["hunt", "create", "stdio", "--sql", hunt["sql"], "--once"])
    assert cli.exit_code == 1 and "win-1: no table process_stdio" in cli.output

    cli = CliRunner().invoke(
        main, ["hunt", "create", "stdio", "--sql", hunt["sql"], "--once", "--skip-missing"]
    )
    assert cli.exit_code == 0, cli.output
    deadline = time.monotonic() + 10
    while not (shown := _hunt_show("stdio"))["runs"]:
        assert time.monotonic() < deadline, "a --once hunt fires at creation"
        time.sleep(0.1)
    [first] = shown["runs"]
    assert first["skipped"] == 2 and first["queued"] + first["sent"] == 2
    assert nodes["web-2"].call("/distributed/read")["queries"] == {}  # never sent
    [qid] = nodes["web-1"].call("/distributed/read")["queries"]
    nodes["web-1"].call(
        "/distributed/write",
        {"queries": {qid: [{"pid": "7"}]}, "statuses": {qid: 0}, "messages": {qid: ""}},
    )
    answer = admin.get("/api/v1/admin/hunts/stdio/results").json()
    assert [(r["host"], r["pid"]) for r in answer["rows"]] == [("web-1", "7")]
    assert sorted(f"{s['host']}: {s['reason']}" for s in answer["skipped"]) == LACKING
    results = CliRunner().invoke(main, ["hunt", "results", "stdio"])
    assert results.exit_code == 0, results.output  # skipped is not failed
    assert "win-1: skipped: no table process_stdio on this windows host" in results.output


def test_dynamic_labels_check_the_tables_of_the_hosts_they_go_to(server: RunningServer) -> None:
    mixed_fleet(server)
    admin = server.admin()
    label = {"name": "stdio", "query": "SELECT 1 FROM process_stdio LIMIT 1"}
    refused = admin.post("/api/v1/admin/labels", json=label)
    assert refused.status_code == 400
    assert sorted(e["message"] for e in refused.json()["errors"]) == LACKING
    windows_only = admin.post(
        "/api/v1/admin/labels",
        json={"name": "services", "query": "SELECT 1 FROM services", "platform": "windows"},
    )
    assert windows_only.status_code == 200, windows_only.text  # goes to win-1 only
    linux = admin.post("/api/v1/admin/labels", json=label | {"platform": "linux"})
    assert linux.status_code == 400
    assert [e["message"] for e in linux.json()["errors"]] == LACKING[:1]
    cli = CliRunner().invoke(
        main,
        [
            "labels",
            "apply",
            "stdio",
            "--sql",
            label["query"],
            "--platform",
            "linux",
            "--skip-missing",
        ],
    )
    assert cli.exit_code == 0, cli.output
    assert "label stdio: created" in cli.output


def _hunt_show(name: str) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["hunt", "show", name, "--format", "json"])
    assert result.exit_code == 0, result.output
    shown: dict[str, Any] = json.loads(result.output)[0]
    return shown
