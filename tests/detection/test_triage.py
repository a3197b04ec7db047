"""Triage answers from stored rows: a real server on SQLite and PostgreSQL, fed by a
simulated osqueryd, then ``GET /findings/{id}`` answers the seed's triage questions for
the finding's leading occurrence, each with the rows it used, and says when the store
cannot answer and why. The walk from a child to the process that fed it is checked on
hand-made rows first."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from fleetctl.cli import main
from fleetctl.detection.triage import initiator_chain
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.results import prune
from tests.conftest import RunningServer
from tests.detection.reporting import ReportingHost, wait_for
from tests.detection.rows import BASE, BASE_STDIO, proc, snapshot, stdio

API = "/api/v1/admin"
DASH = "/usr/bin/dash"


def test_the_chain_goes_through_the_relay_to_the_unix_socket_client() -> None:
    """socat's handler runs the shell on a socketpair; the client at the other end of the
    handler's unix socket is the process that initiated it."""
    processes = [
        *BASE,
        proc(900, 601, "/usr/bin/socat", "socat UNIX-LISTEN:/tmp/s.sock,fork EXEC:sh"),
        proc(901, 900, "/usr/bin/socat", "socat UNIX-LISTEN:/tmp/s.sock,fork EXEC:sh"),
        proc(902, 901, DASH, "sh"),
        proc(950, 601, "/usr/bin/socat", "socat - UNIX-CONNECT:/tmp/s.sock"),
    ]
    channels = [
        *BASE_STDIO,
        *(stdio(902, fd, "unix", partner=901, inode=9020, mode="rw") for fd in (0, 1, 2)),
    ]
    peers = [
        {"pid": "901", "path": "/tmp/s.sock", "type": "stream", "state": "established"}
        | {"peer_pid": "950", "peer_path": "", "name": "socat", "start_time": "1000"},
        {"pid": "901", "path": "", "type": "stream", "state": "established"}
        | {"peer_pid": "902", "peer_path": "", "name": "socat", "start_time": "1000"},
    ]
    snap = snapshot(processes, channels, unix_socket_peers=peers)
    chain = initiator_chain(snap, 902)
    assert chain.initiator == 950
    assert [(h.pid, h.from_pid) for h in chain.route()] == [(901, 902), (950, 901)]
    assert "/tmp/s.sock" in chain.paths


def test_no_other_end_leaves_no_initiator() -> None:
    """A shell reading a FIFO whose writer is in no row: nothing to walk to."""
    processes = [*BASE, proc(2000, 700, DASH, "sh", uid=33)]
    channels = [*BASE_STDIO, stdio(2000, 0, "fifo", "/srv/q/a")]
    chain = initiator_chain(snapshot(processes, channels), 2000)
    assert chain.initiator is None and chain.hops == ()
    assert chain.dangling == ("fd 0 is a FIFO /srv/q/a",)


@pytest.fixture
def admin(server: RunningServer) -> httpx.Client:
    return server.admin()


def learned(server: RunningServer, admin: httpx.Client, *names: str) -> list[ReportingHost]:
    """Hosts that reported their base tree and were learned: new paths are judged."""
    hosts = [ReportingHost(server, name) for name in names]
    for host in hosts:
        host.report()
    answer = admin.post(f"{API}/detect", json={"learn": True}).json()
    assert answer["refused"] == [], answer
    return hosts


def finding_of(admin: httpx.Client, pid: int) -> dict[str, Any]:
    """The finding whose newest occurrence is ``pid`` (detection runs just after a report)."""
    found = wait_for(
        lambda: admin.get(f"{API}/findings").json()["findings"],
        lambda listed: any(f["pid"] == pid for f in listed),
    )
    return next(f for f in found if f["pid"] == pid)


def answers(admin: httpx.Client, finding: str, **params: Any) -> dict[str, dict[str, Any]]:
    shown = admin.get(f"{API}/findings/{finding}", params=params)
    assert shown.status_code == 200, shown.text
    return {a["key"]: a for a in shown.json()["triage"]["answers"]}


def differential(host: ReportingHost, counter: int) -> None:
    """One differential run of a unix-socket query at ``counter`` (a jump past the last
    one is a counter gap: the runs in between never arrived)."""
    host.node.log(
        "result",
        [
            {
                "name": "pack_ipc-telemetry_unix_sockets",
                "hostIdentifier": host.identifier,
                "unixTime": int(time.time()),
                "epoch": 0,
                "counter": counter,
                "numerics": False,
                "action": "added",
                "columns": {"pid": "1", "path": f"/run/s{counter}.sock", "state": "listen"},
            }
        ],
    )


def test_a_fifo_shell_is_answered_from_the_store(
    server: RunningServer, admin: httpx.Client
) -> None:
    host, other = learned(server, admin, "jumpvm", "web-2")
    # The python app started a shell before, here and on another host (the lineage
    # query joins the parent's columns, as osquery returns them).
    earlier = proc(1990, 700, DASH, "sh", uid=33, start=900) | {
        "parent_name": "python3.11",
        "parent_path": "/usr/bin/python3.11",
        "parent_cmdline": "python3 app.py",
    }
    other.report([proc(3000, 700, DASH, "sh", uid=33, start=900)])
    host.report([earlier])
    # A writer holds the FIFO open (collected), then a shell starts reading it, and
    # runs `id`.
    writer = proc(2100, 601, "/usr/bin/sleep", "sleep 600")
    writer_end = stdio(2100, 1, "fifo", "/srv/q/a", mode="w", partner=2000, inode=77)
    host.report([writer], [writer_end])
    shell_start = host.last + 1
    shell = proc(2000, 700, DASH, "sh", uid=33, start=shell_start)
    child = proc(2001, 2000, "/usr/bin/id", "id", uid=33, start=shell_start + 1)
    host.report(
        [writer, shell, child],
        [
            writer_end,
            stdio(2000, 0, "fifo", "/srv/q/a", mode="r", partner=2100, start=shell_start, inode=77),
            stdio(2000, 1, "file", "/srv/q/out", start=shell_start),
        ],
    )
    finding = finding_of(admin, 2000)
    got = answers(admin, finding["id"])

    first = got["initiator"]
    assert first["status"] == "answered", first
    assert first["answer"].startswith("sleep[2100]: dash[2000] <- sleep[2100] (fd 0 fifo")
    assert "bash[601] <- sshd[600]" in first["answer"]  # the initiator's own lineage
    roles = {(r["role"], r["pid"]) for r in first["evidence"]}
    assert {("hop 1", 2100), ("initiator", 2100), ("initiator's ancestor", 601)} <= roles

    user = got["user"]
    assert user["status"] == "partial" and user["answer"].startswith("uid 33")
    assert "runs as uid 1000" in user["answer"]  # the initiator's user
    assert "logged_in_users" in user["why"]

    before = got["preceded"]
    assert before["status"] == "answered" and before["answer"].startswith("yes:"), before
    assert any(r["pid"] == 2100 and r["object"] == "/srv/q/a" for r in before["evidence"])

    usual = got["prevalence"]
    assert usual["status"] == "answered"
    assert usual["answer"].startswith("yes: python3.11 app.py started dash on jumpvm")
    assert "(1 earlier start(s)" in usual["answer"]
    assert "on 1 other of 2 host(s) (web-2)" in usual["answer"]
    assert any(r["role"] == "earlier start" and r["pid"] == 1990 for r in usual["evidence"])

    then = got["next"]
    assert then["status"] == "partial"  # no exec events, and the window is not over
    assert any(r["role"] == "child process" and r["pid"] == 2001 for r in then["evidence"])
    assert "1 child process(es) (id)" in then["answer"]
    assert "/srv/q/a" in then["answer"]

    complete = got["telemetry"]
    assert complete["status"] == "answered" and complete["answer"].startswith("yes:"), complete


def test_what_the_store_cannot_answer_says_why(server: RunningServer, admin: httpx.Client) -> None:
    (host,) = learned(server, admin, "jumpvm")
    differential(host, 0)
    start = host.last + 1
    # The FIFO's writer was gone before the first snapshot: no row names it. A child
    # row with a junk pid (what a host sends is hostile) is passed over.
    junk = proc(1, 2000, "/usr/bin/id", "id", start=start + 1) | {"pid": "zz"}
    host.report(
        [proc(2000, 700, DASH, "sh", uid=33, start=start), junk],
        [stdio(2000, 0, "fifo", "/srv/q/a", mode="r", start=start)],
    )
    finding = finding_of(admin, 2000)
    differential(host, 4)  # counters 1..3 never arrived: a gap inside the window
    got = answers(admin, finding["id"])

    assert got["initiator"]["status"] == "unknown"
    assert "fd 0 is a FIFO /srv/q/a" in got["initiator"]["why"]
    assert "exited before the snapshot" in got["initiator"]["why"]
    assert got["preceded"]["status"] == "unknown"
    assert "no stored row of the channel's other end" in got["preceded"]["why"]

    usual = got["prevalence"]
    assert usual["answer"].startswith("no: python3.11 app.py never started dash on jumpvm")
    assert "on 0 other of 1 host(s)" in usual["answer"]

    assert "0 child process(es)" in got["next"]["answer"]
    lost = got["telemetry"]
    assert lost["status"] == "answered" and lost["answer"].startswith("no: 1 data-loss")
    assert [r["kind"] for r in lost["evidence"] if r["role"] == "data loss"] == ["counter_gap"]


def test_parameters_are_checked_and_evidence_is_cut(
    server: RunningServer, admin: httpx.Client
) -> None:
    (host,) = learned(server, admin, "jumpvm")
    start = host.last + 1
    host.report(
        [proc(2000, 700, DASH, "sh", uid=33, start=start)],
        [stdio(2000, 0, "fifo", "/srv/q/a", mode="r", start=start)],
    )
    finding = finding_of(admin, 2000)["id"]
    for params, status in (
        ({"window": "0s"}, 400),
        ({"window": "2d"}, 400),
        ({"window": "soon"}, 400),
        ({"evidence_limit": "0"}, 400),
        ({"occurrence": "999999"}, 404),
    ):
        answer = admin.get(f"{API}/findings/{finding}", params=params)
        assert answer.status_code == status, (params, answer.text)
        assert "error" in answer.json()
    shown = admin.get(f"{API}/findings/{finding}").json()
    occurrence = shown["occurrences"][0]["id"]
    assert shown["triage"]["occurrence"] == occurrence
    cut = answers(admin, finding, occurrence=occurrence, evidence_limit=1, window="30s")
    user = cut["user"]
    assert len(user["evidence"]) == 1 and user["evidence_cut"] is True
    assert "within 30s of its start" in cut["next"]["answer"]


def test_findings_show_has_a_triage_section_and_a_triage_object(
    server: RunningServer, admin: httpx.Client
) -> None:
    (host,) = learned(server, admin, "jumpvm")
    start = host.last + 1
    host.report(
        [proc(2000, 700, DASH, "sh", uid=33, start=start)],
        [stdio(2000, 0, "fifo", "/srv/q/a", mode="r", start=start)],
    )
    finding = finding_of(admin, 2000)["id"]

    def show(*args: str) -> str:
        result = CliRunner().invoke(
            main, ["findings", "show", finding, *args], env={"COLUMNS": "300"}
        )
        assert result.exit_code == 0, result.output
        return result.stdout

    table = show("--window", "5m", "--evidence-limit", "2")
    assert "Triage of occurrence" in table and "window 5m" in table
    assert "1. Which process initiated the execution" in table
    assert "[unknown] no process at the other end of dash[2000]'s channels" in table
    assert "why: fd 0 is a FIFO /srv/q/a" in table
    assert "6. Was the host's telemetry complete over that time?" in table
    assert "evidence: 2 row(s), cut (raise --evidence-limit)" in table
    (shown,) = json.loads(show("--format", "json"))
    assert [a["key"] for a in shown["triage"]["answers"]] == [
        "initiator",
        "user",
        "preceded",
        "prevalence",
        "next",
        "telemetry",
    ]
    assert shown["triage"]["window"] == "10m"


def test_pruned_history_falls_back_on_the_stored_evidence(
    server: RunningServer, admin: httpx.Client
) -> None:
    """Once retention pruned the host's rows of that time, the other end is what the
    occurrence's evidence recorded, and the answer says its lineage is gone."""
    (host,) = learned(server, admin, "jumpvm")
    start = host.last + 1
    writer = proc(2100, 601, "/usr/bin/sleep", "sleep 600")
    host.report(
        [writer, proc(2000, 700, DASH, "sh", uid=33, start=start)],
        [
            stdio(2100, 1, "fifo", "/srv/q/a", mode="w", partner=2000, inode=77),
            stdio(2000, 0, "fifo", "/srv/q/a", mode="r", partner=2100, start=start, inode=77),
        ],
    )
    finding = finding_of(admin, 2000)["id"]
    host.report()  # both gone: their rows close
    engine = make_engine(server.settings.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            assert prune(session, int(time.time()) + 1).rows > 0
    finally:
        engine.dispose()
    first = answers(admin, finding)["initiator"]
    assert first["status"] == "partial"
    assert first["answer"] == "sleep[2100] (fd 0 fifo), from the stored evidence"
    assert "pruned" in first["why"]


def test_a_channel_collected_after_the_child_with_no_known_other_end_cannot_be_dated(
    server: RunningServer, admin: httpx.Client
) -> None:
    """Stock osquery on socat's shell: its stdio is a unix socket no row pairs with a
    process; socat's listening path was first collected with the shell, so nothing says
    which came first."""
    (host,) = learned(server, admin, "jumpvm")
    start = host.last + 1
    socat = proc(900, 601, "/usr/bin/socat", "socat UNIX-LISTEN:/tmp/s.sock,fork EXEC:sh")
    host.report(
        [socat, proc(902, 900, DASH, "sh", start=start)],
        [stdio(902, fd, "unix", start=start) for fd in (0, 1)],
    )
    host.node.log(
        "result",
        [
            {
                "name": "pack_ipc-telemetry_unix_listeners",
                "hostIdentifier": host.identifier,
                "unixTime": host.last,
                "epoch": 0,
                "counter": 0,
                "numerics": False,
                "action": "snapshot",
                "snapshot": [
                    {"pid": "900", "name": "socat", "process_path": "/usr/bin/socat"}
                    | {"cmdline": "socat", "uid": "1000", "path": "/tmp/s.sock", "fd": "5"}
                    | {"socket": "4242"}
                ],
            }
        ],
    )
    admin.post(f"{API}/detect", json={}).raise_for_status()
    got = answers(admin, finding_of(admin, 902)["id"])
    assert got["initiator"]["status"] == "unknown"
    assert "fd 0 is a unix socket" in got["initiator"]["why"]
    before = got["preceded"]
    assert (before["status"], before["answer"]) == ("unknown", "cannot tell"), before
    assert "no process at its other end is known" in before["why"]
    assert any(r["object"] == "/tmp/s.sock" for r in before["evidence"])
