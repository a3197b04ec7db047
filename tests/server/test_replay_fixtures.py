"""Replay real osqueryd logs through HTTPS exactly as osqueryd sends them, and check the
temporal store's answers (processes and AF_UNIX sockets on ``jumpvm``) at the end and
in the middle of the recorded day."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "osquery-logs"  # see SOURCES.md
RESULTS = FIXTURES / "microsoft_msticpy" / "osqueryd.results.log"
SNAPSHOTS = FIXTURES / "microsoft_msticpy" / "osqueryd.snapshots.log"
ELASTIC = FIXTURES / "elastic_beats" / "test.log"

PROCESSES = "pack_osquery-custom-pack_processes"
SOCKETS = "pack_incident-response_open_sockets"
MIDDLE = 1678936200  # after processes counter 174, before 175 and the socket removals
END = 1678994667 + 1


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rows(server: RunningServer, query: str, at: int, host: str = "jumpvm") -> list[dict[str, Any]]:
    response = server.admin().get(
        "/api/v1/admin/results", params={"host": host, "query": query, "at": str(at)}
    )
    assert response.status_code == 200, response.text
    return response.json()["rows"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("batch", [1024, 7])
def test_replay_msticpy_jumpvm(server: RunningServer, batch: int, monkeypatch: Any) -> None:
    import tests.osquery_node as osquery_node

    monkeypatch.setattr(osquery_node, "MAX_LINES", batch)
    node = server.node("jumpvm", "40443dd9-5b21-a345-8f89-aadde84c3719")
    assert node.enroll()["node_key"]
    for answer in node.log("result", read_lines(RESULTS), compress=True):
        assert answer == {"node_invalid": False}
    for answer in node.log("result", read_lines(SNAPSHOTS)):
        assert answer == {"node_invalid": False}

    at_end = {r["pid"]: r["name"] for r in rows(server, PROCESSES, END)}
    assert at_end == {
        "193769": "anacron",
        "193777": "run-parts",
        "193778": "run-parts",
        "193779": "logrotate",
        "193868": "kthreadd",
        "194061": "kthreadd",
        "194141": "logrotate",
        "194347": "kthreadd",
        "194399": "kthreadd",
        "194678": "kthreadd",
        "194794": "kthreadd",
        "195099": "systemd",
    }
    middle = {r["pid"] for r in rows(server, PROCESSES, MIDDLE)}
    # run 175 removed the two systemd children; the kthreadd workers removed by run 174
    # were already gone.
    assert {"194358", "194361"} <= middle and "195099" not in middle
    assert "177296" not in middle

    unix_middle = {
        (r["pid"], r["path"]) for r in rows(server, SOCKETS, MIDDLE) if r["family"] == "1"
    }
    assert ("991", "/run/dbus/system_bus_socket") in unix_middle
    assert ("1357934", "/run/containerd/containerd.sock") in unix_middle
    assert ("1357934", "/run/containerd/containerd.sock.ttrpc") in unix_middle
    assert len(unix_middle) == len(
        {
            (json.dumps(line["columns"], sort_keys=True))
            for line in read_lines(RESULTS)
            if line["name"] == SOCKETS
        }
    )
    assert rows(server, SOCKETS, END) == []

    packages = rows(server, "pack_osquery-snapshots-pack_python_packages", END)
    assert len(packages) == 40 and {"Babel", "Jinja2"} <= {p["name"] for p in packages}


def test_replay_elastic_line_without_host_identifier(server: RunningServer) -> None:
    node = server.node(
        "192-168-0-4.rdsnet.ro", "4AB2906D-5516-5794-AF54-86D1D7F533F3", platform_type="21"
    )
    node.enroll()
    assert node.log("result", read_lines(ELASTIC)) == [{"node_invalid": False}]

    # Both lines remove /private/var/vm (osquery 2.x wrote numbers as strings), at :08
    # and at :18. Each removal proves the mount existed just before it, from a time
    # before this history began.
    def at(t: int) -> list[tuple[str, str | None, str]]:
        return sorted(
            (r["path"], r["first_seen"], r["removed_at"])
            for r in rows(server, "pack_it-compliance_mounts", t, host="192-168-0-4.rdsnet.ro")
        )

    assert at(1514472000) == [
        ("/private/var/vm", None, "2017-12-28T14:40:08Z"),
        ("/private/var/vm", None, "2017-12-28T14:40:18Z"),
    ]
    assert at(1514472010) == [("/private/var/vm", None, "2017-12-28T14:40:18Z")]
    assert at(1514472020) == []
