"""A host's distributed answers count only for queries it was handed, over real HTTPS on
SQLite and PostgreSQL: everything else is dropped and reported once per request."""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from fleetctl.server.campaign_queue import parse_campaign_query_id
from fleetctl.server.distributed_answers import printable_id
from fleetctl.server.label_queue import LabelQueue, parse_label_query_id
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.labels import DynamicLabel
from storage.models import (
    Campaign,
    CampaignTarget,
    Host,
    Label,
    LabelMembership,
    StatusLog,
)
from tests.conftest import RunningServer

LINUX = "9"
DARWIN = "21"


def _execute(server: RunningServer, stmt: Any) -> None:
    engine = make_engine(server.settings.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            session.execute(stmt)
    finally:
        engine.dispose()


def answer(node: Any, rows: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """One distributed write as osqueryd sends it: every id succeeded."""
    return node.call(
        "/distributed/write",
        {
            "queries": rows,
            "statuses": dict.fromkeys(rows, 0),
            "messages": dict.fromkeys(rows, ""),
            "stats": {qid: {"wall_time_ms": 1} for qid in rows},
        },
    )


def enrolled(server: RunningServer, name: str, platform: str = "rhel") -> Any:
    node = server.node(name, f"u-{name}", platform_type=DARWIN if platform == "darwin" else LINUX)
    node.host_details = lambda: {  # type: ignore[method-assign]
        "system_info": {"uuid": node.uuid, "hostname": name},
        "os_version": {"platform": platform, "name": platform, "version": "1"},
        "osquery_info": {"version": "5.23.0"},
    }
    assert node.enroll()["node_key"]
    return node


def label_id(server: RunningServer, name: str) -> int:
    [(found,)] = server.query(select(Label.id).where(Label.name == name))
    return int(found)


def members(server: RunningServer, name: str) -> list[str]:
    answer = server.admin().get(f"/api/v1/admin/labels/{name}")
    assert answer.status_code == 200, answer.text
    return sorted(m["host_identifier"] for m in answer.json()["members"])


def server_lines(server: RunningServer, host: str) -> list[dict[str, Any]]:
    logs = server.admin().get("/api/v1/admin/status-logs", params={"host": host}).json()
    return [s for s in logs["status_logs"] if s["location"] == "fleetctl-server:0"]


def start_query(server: RunningServer, targets: str) -> int:
    started = server.admin().post(
        "/api/v1/admin/queries", json={"sql": "SELECT 1 AS one", "targets": targets}
    )
    assert started.status_code == 200, started.text
    return int(started.json()["id"])


def target(server: RunningServer, cid: int, host: str) -> tuple[str, Any]:
    status = server.admin().get(f"/api/v1/admin/queries/{cid}").json()
    [found] = [(h["state"], h["rows"]) for h in status["hosts"] if h["host"] == host]
    return found


def test_a_manual_label_is_changed_by_admins_only(server: RunningServer) -> None:
    member = enrolled(server, "member")
    intruder = enrolled(server, "intruder")
    created = server.admin().post(
        "/api/v1/admin/labels", json={"name": "canaries", "hosts": ["member"]}
    )
    assert created.status_code == 200, created.text
    qid = f"fleetctl_label_{label_id(server, 'canaries')}"

    assert answer(intruder, {qid: [{"1": "1"}]}) == {"node_invalid": False}
    assert answer(member, {qid: []}) == {"node_invalid": False}

    assert members(server, "canaries") == ["member"]
    for host in ("intruder", "member"):
        [line] = server_lines(server, host)
        assert line["severity"] == 1
        assert line["message"] == (
            f"dropped 1 distributed answer(s) to queries this host was not sent: '{qid}'"
        )


def test_a_label_for_another_platform_is_not_answered(server: RunningServer) -> None:
    mac = enrolled(server, "mac", "darwin")
    linux = enrolled(server, "linux")
    server.admin().post(
        "/api/v1/admin/labels",
        json={"name": "macs", "platform": "darwin", "query": "SELECT 1 FROM system_info;"},
    )
    server.thread.state.reload_labels()
    qid = f"fleetctl_label_{label_id(server, 'macs')}"
    assert list(mac.call("/distributed/read")["queries"]) == [qid]
    assert linux.call("/distributed/read")["queries"] == {}

    answer(linux, {qid: [{"1": "1"}]})
    answer(mac, {qid: []})

    assert members(server, "macs") == []
    evaluated = select(Host.host_identifier, LabelMembership.member).join(
        Host, Host.id == LabelMembership.host_id
    )
    assert server.query(evaluated) == [("mac", False)]
    assert len(server_lines(server, "linux")) == 1
    assert server_lines(server, "mac") == []


def test_a_handed_out_dynamic_label_changes_membership_once(server: RunningServer) -> None:
    node = enrolled(server, "lin")
    server.admin().post(
        "/api/v1/admin/labels",
        json={"name": "rhel", "platform": "linux", "query": "SELECT 1 FROM os_version;"},
    )
    server.thread.state.reload_labels()
    [qid] = node.call("/distributed/read")["queries"]
    assert answer(node, {qid: [{"1": "1"}]}) == {"node_invalid": False}
    assert members(server, "rhel") == ["lin"]
    assert server_lines(server, "lin") == []

    # Answered, so neither handed out nor due: a host cannot leave (or join) at will.
    answer(node, {qid: []})
    assert members(server, "rhel") == ["lin"]
    assert len(server_lines(server, "lin")) == 1


def test_a_due_dynamic_label_answered_at_another_server_counts(server: RunningServer) -> None:
    """What a replica sharing the store sees: the label was handed out elsewhere, and it
    is due for this host (never answered), so the answer counts."""
    node = enrolled(server, "roamer")
    server.admin().post("/api/v1/admin/labels", json={"name": "all", "query": "SELECT 1;"})
    qid = f"fleetctl_label_{label_id(server, 'all')}"
    answer(node, {qid: [{"1": "1"}]})
    assert members(server, "all") == ["roamer"]


def test_campaign_answers_are_kept_only_from_hosts_it_was_handed_to(
    server: RunningServer,
) -> None:
    target_host = enrolled(server, "target")
    bystander = enrolled(server, "bystander")
    cid = start_query(server, "host:target")
    qid = f"fleetctl_campaign_{cid}"

    # Not handed out yet: refused whole, so that osqueryd resends (see the replica test).
    early = answer(target_host, {qid: [{"one": "forged"}]})
    assert "before their hand-out was recorded" in early["error"]
    assert target(server, cid, "target") == ("queued", [])

    assert list(target_host.call("/distributed/read")["queries"]) == [qid]
    assert answer(bystander, {qid: [{"one": "forged"}]}) == {"node_invalid": False}
    assert answer(target_host, {qid: [{"one": "1"}]}) == {"node_invalid": False}

    assert target(server, cid, "target")[1] == [{"one": "1"}]
    assert server.query(select(func.count()).select_from(CampaignTarget)) == [(1,)]
    [line] = server_lines(server, "bystander")
    assert f"'{qid}'" in line["message"]
    assert server_lines(server, "target") == []


def test_an_answer_after_the_campaign_expired_is_dropped(server: RunningServer) -> None:
    node = enrolled(server, "late")
    cid = start_query(server, "host:late")
    [qid] = node.call("/distributed/read")["queries"]
    server.thread.state.flush_sent()
    _execute(server, update(Campaign).where(Campaign.id == cid).values(expires_at=1))

    assert answer(node, {qid: [{"one": "1"}]}) == {"node_invalid": False}

    state, rows = target(server, cid, "late")
    assert state in ("sent", "expired") and rows == []
    assert len(server_lines(server, "late")) == 1


def test_two_thousand_made_up_ids_store_nothing_but_one_status_line(
    server: RunningServer,
) -> None:
    node = enrolled(server, "noisy")
    server.admin().post("/api/v1/admin/labels", json={"name": "manual", "hosts": ["noisy"]})
    server.admin().post("/api/v1/admin/labels", json={"name": "dyn", "query": "SELECT 1;"})
    answer(node, {f"fleetctl_label_{label_id(server, 'dyn')}": [{"1": "1"}]})  # now not due
    start_query(server, "all")  # queued for the host, never handed out
    baseline = server.query(select(LabelMembership.label_id, LabelMembership.member))
    rng = random.Random(1559)
    ids = {
        "fleetctl_campaign_²",
        "fleetctl_campaign_0001",
        "fleetctl_campaign_" + "9" * 30,
        "fleetctl_label_-1",
        "\x00starts with NUL",
        "x" * 10_000,
    }
    ids.update(f"fleetctl_campaign_{rng.randrange(2, 10**12)}" for _ in range(600))
    ids.update(f"fleetctl_label_{rng.randrange(3, 10**12)}" for _ in range(600))
    while len(ids) < 2_000:
        ids.add("".join(rng.choices(string.printable, k=rng.randrange(1, 40))))

    assert answer(node, {qid: [{"pid": "1"}] for qid in ids}) == {"node_invalid": False}

    assert server.query(select(LabelMembership.label_id, LabelMembership.member)) == baseline
    assert server.query(select(CampaignTarget.state, CampaignTarget.rows)) == [("queued", None)]
    assert server.query(select(StatusLog.filename, StatusLog.severity)) == [("fleetctl-server", 1)]
    [line] = server_lines(server, "noisy")
    assert line["message"].startswith(
        "dropped 2000 distributed answer(s) to queries this host was not sent: "
    )
    assert line["message"].endswith(" and 1995 more")
    assert len(line["message"]) < 2_000  # five ids, each cut to 64 characters


def test_a_hand_out_another_replica_has_not_written_yet_is_resent(
    server: RunningServer, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two servers on one PostgreSQL: the host takes a live query from one and answers at
    the other before the first has written the hand-out; osqueryd is asked to resend, and
    the resend after the write is stored."""
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL store")
    from tests.osquery_node import OsqueryNode

    replica = server.replica(tmp_path / "replica")
    try:
        node = enrolled(server, "roamer")
        at_replica = OsqueryNode(replica.url, replica.ca, replica.secret, "roamer", "u-roamer")
        at_replica.node_key = node.node_key
        replica.clients.append(at_replica.http)
        state = server.thread.state
        flush = state.flush_sent
        monkeypatch.setattr(state, "flush_sent", lambda: None)  # the hand-out stays in memory
        cid = start_query(server, "host:roamer")
        [qid] = node.call("/distributed/read")["queries"]

        refused = answer(at_replica, {qid: [{"one": "1"}]})
        assert "before their hand-out was recorded" in refused["error"]
        assert target(server, cid, "roamer") == ("queued", [])

        flush()
        assert answer(at_replica, {qid: [{"one": "1"}]}) == {"node_invalid": False}
        assert target(server, cid, "roamer") == ("done", [{"one": "1"}])
        assert server_lines(server, "roamer") == []
    finally:
        replica.stop()


def test_only_the_ids_the_server_writes_are_parsed() -> None:
    assert parse_campaign_query_id("fleetctl_campaign_12") == 12
    assert parse_label_query_id("fleetctl_label_7") == 7
    for made_up in (
        "fleetctl_campaign_",
        "fleetctl_campaign_012",
        "fleetctl_campaign_²",
        "fleetctl_campaign_+1",
        "fleetctl_campaign_" + "9" * 19,
        "xfleetctl_campaign_1",
        "fleetctl_label_1",
    ):
        assert parse_campaign_query_id(made_up) is None, made_up
    assert parse_label_query_id("fleetctl_campaign_1") is None


def test_a_label_is_accepted_when_handed_out_or_due_and_for_the_platform() -> None:
    queue = LabelQueue(refresh=600)
    linux = DynamicLabel(1, "l", "SELECT 1", "linux", updated_at=1_000)
    queue.load([linux], {(9, 1): 1_500})
    assert not queue.accepts(9, "linux", linux, 1_500, now=1_600)  # answered, fresh
    assert queue.accepts(9, "linux", linux, 1_500, now=2_100)  # older than refresh
    assert queue.accepts(9, "linux", linux, None, now=1_600)  # never answered
    assert queue.accepts(9, "linux", linux, 900, now=1_600)  # the label changed since
    assert not queue.accepts(9, "darwin", linux, None, now=1_600)  # not its platform

    queue.load([linux], {(9, 1): 0})
    assert queue.due(9, "linux", now=1_600) == {"fleetctl_label_1": "SELECT 1"}
    assert queue.accepts(9, "linux", linux, 1_550, now=1_600)  # handed out here
    queue.answered(9, 1, now=1_600)
    assert not queue.accepts(9, "linux", linux, 1_600, now=1_601)


def test_dropped_ids_are_shown_cut_and_escaped() -> None:
    assert printable_id("fleetctl_label_1") == "'fleetctl_label_1'"
    assert printable_id("x" * 100) == "'" + "x" * 64 + "'..."
    assert printable_id("a\x00b\udc80") == "'a\\x00b\\udc80'"
