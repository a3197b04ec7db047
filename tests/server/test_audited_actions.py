"""Each kind of change and query the audit trail must hold, done through a real server on
SQLite and PostgreSQL, and its entry read back: who (the user and the token's name), from
where, when, how it ended, and what matters of it (the SQL, the targets, the hunt, pack,
label, host, user or token it named, the note and scope of a triage), console sign-ins
and sign-outs among them. ``db prune`` is in tests/cli/test_cli_db.py."""

from __future__ import annotations

import time
from typing import Any

import httpx

from fleetctl.timeutil import parse_time
from tests.conftest import RunningServer
from tests.detection.reporting import ReportingHost, fifo_shell, wait_for
from tests.server.test_audit import trail

API = "/api/v1/admin"
LOGIN = f"POST {API}/login"
OK = ("ok", 200)
YEARLY = "0 0 1 1 *"  # a hunt that never fires during the test
PASSWORD = "correct horse battery staple"
PACK = {"queries": {"pids": {"query": "SELECT pid FROM processes;", "interval": 60}}}
BASELINE = "version: 1\nextends: default\nparent_child:\n  - {name: cron-sh, parent: cron}\n"


def one(entries: list[dict[str, Any]], action: str, target: str = "", **fields: Any) -> Any:
    """The one entry of ``action`` on ``target`` (with these ``fields``)."""
    found = [
        e
        for e in entries
        if (e["action"], e["target"]) == (action, target)
        and all(e[k] == v for k, v in fields.items())
    ]
    assert len(found) == 1, (action, target, fields, entries)
    return found[0]


def body_by(
    entry: dict[str, Any], who: tuple[str, str], since: int, ended: tuple[str, int] = OK
) -> Any:
    """The entry's recorded body, once who made it (user, token name), from where, when
    and how it ended are as expected."""
    assert (entry["user"], entry["token"], entry["source"]) == (*who, "127.0.0.1"), entry
    assert since <= parse_time(entry["at"]) <= time.time(), entry
    assert (entry["outcome"], entry["status"]) == ended, entry
    return entry["details"].get("body", {})


def ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    return answer.json()


def add_hunter(server: RunningServer, name: str) -> None:
    ok(
        server.admin().post(
            f"{API}/users", json={"name": name, "role": "hunter", "password": PASSWORD}
        )
    )


def test_sign_ins_analyst_sql_live_queries_and_hunt_changes(server: RunningServer) -> None:
    since = int(time.time())
    add_hunter(server, "hana")
    web = server.client()
    failed = web.post(f"{API}/login", json={"user": "hana", "password": "not her password"})
    assert failed.status_code == 401
    signed = ok(web.post(f"{API}/login", json={"user": "hana", "password": PASSWORD, "name": "nb"}))
    hana = server.client(signed["token"])
    server.node("web-1", "uuid-web-1").enroll()
    sql = "SELECT count(*) AS n FROM hunt_hosts"
    ok(hana.post(f"{API}/sql", json={"sql": sql}))
    live = {"sql": "SELECT 1 AS one", "targets": "host:web-1"}
    ok(hana.post(f"{API}/queries", json=live))
    hunt = {"name": "socat", "sql": "SELECT 2 AS two", "targets": "host:web-1", "cron": YEARLY}
    ok(hana.post(f"{API}/hunts", json=hunt))
    ok(hana.post(f"{API}/hunts/socat/pause", json={}))
    ok(hana.post(f"{API}/hunts/socat/cancel", json={}))

    entries = trail(server.admin())
    refused = one(entries, LOGIN, status=401)
    assert body_by(refused, ("hana", "-"), since, ("refused", 401)) == {"user": "hana"}
    signed_in = one(entries, LOGIN, status=200)
    assert body_by(signed_in, ("hana", "nb"), since) == {"user": "hana", "name": "nb"}
    who = ("hana", "nb")
    assert body_by(one(entries, f"POST {API}/sql"), who, since)["sql"] == sql
    ran = body_by(one(entries, f"POST {API}/queries"), who, since)
    assert (ran["sql"], ran["targets"]) == (live["sql"], live["targets"])
    made = body_by(one(entries, f"POST {API}/hunts"), who, since)
    assert {k: made[k] for k in hunt} == hunt
    for change in ("pause", "cancel"):
        body_by(one(entries, f"POST {API}/hunts/{{name}}/{change}", "name=socat"), who, since)
    assert PASSWORD not in str(entries) and signed["token"] not in str(entries)


def test_packs_labels_baseline_host_deletes_users_and_tokens(server: RunningServer) -> None:
    since = int(time.time())
    admin = server.admin()
    server.node("web-1", "uuid-web-1").enroll()
    ok(admin.post(f"{API}/labels", json={"name": "canaries", "hosts": ["web-1"]}))
    applied = [{"name": "pids", "pack": PACK, "labels": ["canaries"]}]
    ok(admin.post(f"{API}/packs/apply", json={"packs": applied}))
    ok(admin.delete(f"{API}/packs/pids"))
    ok(admin.delete(f"{API}/labels/canaries"))
    version = ok(admin.get(f"{API}/baseline"))["version"]
    edit = {"yaml": BASELINE, "note": "nightly jobs", "expected_version": version}
    ok(admin.put(f"{API}/baseline", json=edit))
    ok(admin.delete(f"{API}/hosts/web-1"))
    add_hunter(server, "hana")
    ok(admin.post(f"{API}/users/hana/role", json={"role": "observer"}))
    ok(admin.post(f"{API}/users/hana/disable", json={}))
    ok(admin.post(f"{API}/users/hana/enable", json={}))
    ok(admin.post(f"{API}/users/hana/password", json={"password": PASSWORD + "!"}))
    token = {"name": "ci", "user": "hana", "role": "observer", "ttl": "7d"}
    secret = ok(admin.post(f"{API}/tokens", json=token))["token"]
    ok(admin.delete(f"{API}/tokens/ci", params={"user": "hana"}))

    entries = trail(admin)
    who = ("admin", "fleetctl-cli")
    label = body_by(one(entries, f"POST {API}/labels"), who, since)
    assert (label["name"], label["hosts"]) == ("canaries", ["web-1"])
    assert body_by(one(entries, f"POST {API}/packs/apply"), who, since) == {"packs": applied}
    body_by(one(entries, f"DELETE {API}/packs/{{name}}", "name=pids"), who, since)
    body_by(one(entries, f"DELETE {API}/labels/{{name}}", "name=canaries"), who, since)
    assert body_by(one(entries, f"PUT {API}/baseline"), who, since) == edit
    body_by(one(entries, f"DELETE {API}/hosts/{{ref:path}}", "ref=web-1"), who, since)
    added = body_by(one(entries, f"POST {API}/users"), who, since)
    assert added == {"name": "hana", "role": "hunter", "password": "[hidden]"}
    role = one(entries, f"POST {API}/users/{{name}}/role", "name=hana")
    assert body_by(role, who, since) == {"role": "observer"}
    for change in ("disable", "enable"):
        body_by(one(entries, f"POST {API}/users/{{name}}/{change}", "name=hana"), who, since)
    password = one(entries, f"POST {API}/users/{{name}}/password", "name=hana")
    assert body_by(password, who, since) == {"password": "[hidden]"}
    assert body_by(one(entries, f"POST {API}/tokens"), who, since) == token
    revoked = one(entries, f"DELETE {API}/tokens/{{name}}", "name=ci")
    body_by(revoked, who, since)
    assert revoked["details"]["params"] == {"user": "hana"}
    assert PASSWORD not in str(entries) and secret not in str(entries)


def test_ack_and_suppress_with_their_note_and_scope(server: RunningServer) -> None:
    since = int(time.time())
    host = ReportingHost(server)
    host.report()
    admin = server.admin()
    assert ok(admin.post(f"{API}/detect", json={"learn": True}))["refused"] == []
    host.report(*(fifo_shell(2000, 100, "/srv/q/a")))
    (finding,) = wait_for(
        lambda: ok(admin.get(f"{API}/findings"))["findings"], lambda found: len(found) == 1
    )
    add_hunter(server, "hana")
    signed = {"user": "hana", "password": PASSWORD, "name": "triage"}
    hana = server.client(ok(server.client().post(f"{API}/login", json=signed))["token"])
    ack = {"note": "the backup job's FIFO"}
    ok(hana.post(f"{API}/findings/{finding['id']}/ack", json=ack))
    suppress = {"scope": "fleet", "note": "every host runs it"}
    ok(hana.post(f"{API}/findings/{finding['id']}/suppress", json=suppress))

    entries = trail(admin)
    target = f"id={finding['id']}"
    who = ("hana", "triage")
    assert body_by(one(entries, f"POST {API}/findings/{{id}}/ack", target), who, since) == ack
    suppressed = one(entries, f"POST {API}/findings/{{id}}/suppress", target)
    assert body_by(suppressed, who, since) == suppress


def console_sign_in(server: RunningServer, body: dict[str, str]) -> tuple[httpx.Client, Any]:
    """A browser-like client signed in to the console, and what the sign-in answered."""
    browser = server.client()
    return browser, ok(browser.post("/console/sign-in", json=body))


def test_console_sign_ins_and_sign_outs(server: RunningServer) -> None:
    since = int(time.time())
    add_hunter(server, "hana")
    browser, held = console_sign_in(server, {"user": "hana", "password": PASSWORD})
    session_token = held["token"]
    assert session_token.startswith("console-")
    ok(browser.post("/console/sign-out", headers={"X-CSRF-Token": held["csrf"]}))
    tokens = ok(server.admin().get(f"{API}/tokens", params={"user": "hana"}))["tokens"]
    assert [(t["name"], t["state"]) for t in tokens] == [(session_token, "revoked")]
    browser, held = console_sign_in(server, {"token": server.token})
    ok(browser.post("/console/sign-out", headers={"X-CSRF-Token": held["csrf"]}))
    assert server.admin().get(f"{API}/hosts").status_code == 200  # a token it did not make

    entries = trail(server.admin())
    signed = one(entries, "POST /console/sign-in", user="hana")
    assert body_by(signed, ("hana", session_token), since)["console"] is True
    out = one(entries, "POST /console/sign-out", user="hana")
    assert body_by(out, ("hana", session_token), since) == {"console": True, "revoked": True}
    kept = one(entries, "POST /console/sign-out", user="admin")
    assert body_by(kept, ("admin", "fleetctl-cli"), since) == {"console": True, "revoked": False}
