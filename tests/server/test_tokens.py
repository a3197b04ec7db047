"""Signing in and tokens through a real server, on SQLite and PostgreSQL: a sign-in
answers a token of the user; failures are refused alike for a wrong password and an
unknown user, then slowed; expired and revoked tokens are refused (401); everything is
in the audit trail under the user and token name, never a password or a token."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fleetctl.timeutil import parse_time
from tests.conftest import RunningServer

ADMIN = "/api/v1/admin"
PW = "a long enough passphrase"


def admin_password(server: RunningServer) -> str:
    return (server.settings.home / "admin_password").read_text().strip()


def trail(server: RunningServer) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = server.admin().get(f"{ADMIN}/audit").json()["audit"]
    return entries


def test_the_first_admin_signs_in_with_the_generated_password(server: RunningServer) -> None:
    path = server.settings.home / "admin_password"
    assert path.stat().st_mode & 0o777 == 0o600
    password = admin_password(server)
    signed = server.client().post(
        f"{ADMIN}/login", json={"user": "admin", "password": password, "name": "laptop"}
    )
    assert signed.status_code == 200, signed.text
    made = signed.json()
    assert (made["user"], made["name"], made["role"]) == ("admin", "laptop", "admin")
    lasts = made["expires_at"]
    assert lasts is not None
    me = server.client(made["token"])
    assert me.get(f"{ADMIN}/users").status_code == 200
    ran = me.post(f"{ADMIN}/sql", json={"sql": "SELECT 1 AS n"})
    assert ran.status_code == 200

    again = server.client().post(
        f"{ADMIN}/login", json={"user": "admin", "password": password, "name": "laptop"}
    )
    assert again.status_code == 200
    replaced = me.get(f"{ADMIN}/hosts")  # the same name signed in again: the old one goes
    assert replaced.status_code == 401

    entries = trail(server)
    logins = [e for e in entries if e["action"] == "POST /api/v1/admin/login"]
    assert [(e["user"], e["token"], e["outcome"]) for e in logins] == [
        ("admin", "laptop", "ok"),
        ("admin", "laptop", "ok"),
    ]
    sql = next(e for e in entries if e["action"] == "POST /api/v1/admin/sql")
    assert (sql["user"], sql["token"]) == ("admin", "laptop")
    assert password not in str(entries) and made["token"] not in str(entries)


def test_failed_sign_ins_look_alike_are_recorded_and_slowed(server: RunningServer) -> None:
    web = server.client()
    wrong = web.post(f"{ADMIN}/login", json={"user": "admin", "password": "not-the-password"})
    nobody = web.post(f"{ADMIN}/login", json={"user": "mallory", "password": "not-the-password"})
    assert wrong.status_code == nobody.status_code == 401
    assert wrong.json() == nobody.json() == {"error": "wrong user name or password"}
    missing = web.post(f"{ADMIN}/login", json={"user": "admin"})
    assert missing.status_code == 400 and "'password' is required" in missing.json()["error"]

    for _ in range(3):  # five failures in a minute from this address
        web.post(f"{ADMIN}/login", json={"user": "admin", "password": "guess-guess-guess"})
    right = {"user": "admin", "password": admin_password(server)}
    slowed = web.post(f"{ADMIN}/login", json=right)
    assert slowed.status_code == 429, slowed.text
    assert int(slowed.headers["retry-after"]) >= 1

    logins = [e for e in trail(server) if e["action"] == "POST /api/v1/admin/login"]
    assert [(e["user"], e["status"]) for e in logins] == [
        ("admin", 401),
        ("mallory", 401),
        *[("admin", 401)] * 3,
        ("admin", 429),  # not even checked
    ]
    assert all(e["token"] == "-" for e in logins)
    assert "not-the-password" not in str(logins) and "guess-guess" not in str(logins)
    assert logins[0]["details"] == {"body": {"user": "admin"}}


def test_expired_and_revoked_tokens_are_refused(server: RunningServer) -> None:
    admin = server.admin()
    short = admin.post(f"{ADMIN}/tokens", json={"name": "short", "ttl": "1s"})
    assert short.status_code == 200, short.text
    added = admin.post(f"{ADMIN}/users", json={"name": "ob", "role": "hunter"})
    assert added.status_code == 200, added.text
    kept = admin.post(
        f"{ADMIN}/tokens", json={"name": "ci", "ttl": "never", "role": "observer", "user": "ob"}
    )
    assert kept.json()["expires_at"] is None and kept.json()["role"] == "observer"
    short_client = server.client(short.json()["token"])
    ci = server.client(kept.json()["token"])
    assert ci.get(f"{ADMIN}/hosts").status_code == 200
    duplicate = admin.post(f"{ADMIN}/tokens", json={"name": "ci", "user": "ob"})
    assert duplicate.status_code == 400 and "already has a live token" in duplicate.text
    for ttl in ("soon", "0s", "366d"):
        bad_ttl = admin.post(f"{ADMIN}/tokens", json={"name": "x", "ttl": ttl})
        assert bad_ttl.status_code == 400, ttl
        assert bad_ttl.json()["error"] == f"'ttl' must be a duration from 1s to 365d, not {ttl!r}"

    time.sleep(2.1)
    expired = short_client.get(f"{ADMIN}/hosts")
    assert expired.status_code == 401 and "expired" in expired.json()["error"]

    # An observer manages its own tokens, and no one else's.
    assert ci.get(f"{ADMIN}/tokens", params={"user": "admin"}).status_code == 403
    assert ci.delete(f"{ADMIN}/tokens/short", params={"user": "admin"}).status_code == 403
    own = ci.get(f"{ADMIN}/tokens").json()["tokens"]
    assert [(t["user"], t["name"], t["state"]) for t in own] == [("ob", "ci", "live")]
    revoked = admin.delete(f"{ADMIN}/tokens/ci", params={"user": "ob"})
    assert revoked.status_code == 200, revoked.text
    refused = ci.get(f"{ADMIN}/hosts")  # at once, in the process that revoked it
    assert refused.status_code == 401
    again = admin.delete(f"{ADMIN}/tokens/ci", params={"user": "ob"})
    assert again.status_code == 404

    listed = {t["name"]: t["state"] for t in admin.get(f"{ADMIN}/tokens").json()["tokens"]}
    assert listed == {"fleetctl-cli": "live", "short": "expired", "ci": "revoked"}
    changes = [(e["action"], e["target"], e["status"]) for e in trail(server)]
    assert ("POST /api/v1/admin/tokens", "", 200) in changes
    assert ("DELETE /api/v1/admin/tokens/{name}", "name=ci", 200) in changes
    assert ("GET /api/v1/admin/hosts", "", 401) in changes
    assert short.json()["token"] not in str(trail(server))


def sign_in(server: RunningServer, user: str, password: str, **body: str) -> Any:
    return server.client().post(f"{ADMIN}/login", json={"user": user, "password": password} | body)


def test_a_sign_in_always_expires_within_a_day(server: RunningServer) -> None:
    password = admin_password(server)
    for ttl in ("never", "25h", "0s"):
        refused = sign_in(server, "admin", password, ttl=ttl)
        assert refused.status_code == 400, ttl
        assert refused.json()["error"] == f"'ttl' must be a duration from 1s to 1d, not {ttl!r}"
    before = time.time()
    made = sign_in(server, "admin", password, ttl="24h")
    assert made.status_code == 200, made.text
    assert abs(parse_time(made.json()["expires_at"]) - (before + 86400)) <= 5
    default = sign_in(server, "admin", password, name="default").json()
    assert abs(parse_time(default["expires_at"]) - (before + 12 * 3600)) <= 5


def test_a_token_cannot_outlive_the_token_that_makes_it(server: RunningServer) -> None:
    admin = server.admin()  # the first admin's: it never expires
    added = admin.post(f"{ADMIN}/users", json={"name": "hu", "role": "hunter", "password": PW})
    assert added.status_code == 200, added.text
    session = sign_in(server, "hu", PW, ttl="1h").json()
    hu = server.client(session["token"])
    ends = parse_time(session["expires_at"])
    longer = hu.post(f"{ADMIN}/tokens", json={"name": "ci", "ttl": "2h"})
    assert longer.status_code == 403
    assert longer.json()["error"] == (
        f"a token cannot outlive the one that makes it: login expires at {session['expires_at']}"
    )
    never = hu.post(f"{ADMIN}/tokens", json={"name": "ci", "ttl": "never"})
    assert never.status_code == 403
    assert never.json()["error"] == "only an admin makes a token that never expires (hu is not)"
    shorter = hu.post(f"{ADMIN}/tokens", json={"name": "ci", "ttl": "30m"})
    assert shorter.status_code == 200, shorter.text
    unsaid = hu.post(f"{ADMIN}/tokens", json={"name": "ci-2"})  # 30 days, cut to the session
    assert unsaid.status_code == 200 and parse_time(unsaid.json()["expires_at"]) == ends
    made_by_it = server.client(unsaid.json()["token"])
    again = made_by_it.post(f"{ADMIN}/tokens", json={"name": "ci-3", "ttl": "2h"})
    assert again.status_code == 403 and "ci-2 expires at" in again.json()["error"]

    signed_admin = server.client(sign_in(server, "admin", admin_password(server)).json()["token"])
    kept = signed_admin.post(f"{ADMIN}/tokens", json={"name": "bot", "user": "hu", "ttl": "never"})
    assert kept.status_code == 403 and "cannot outlive" in kept.json()["error"]
    bot = admin.post(f"{ADMIN}/tokens", json={"name": "bot", "user": "hu", "ttl": "never"})
    assert bot.status_code == 200 and bot.json()["expires_at"] is None
    as_bot = server.client(bot.json()["token"])  # a hunter's never-expiring token
    refused = as_bot.post(f"{ADMIN}/tokens", json={"name": "bot-2", "ttl": "never"})
    assert refused.status_code == 403 and "only an admin" in refused.json()["error"]
    year = as_bot.post(f"{ADMIN}/tokens", json={"name": "bot-2", "ttl": "365d"})
    assert year.status_code == 200, year.text


def test_user_changes_are_recorded_without_passwords(server: RunningServer) -> None:
    admin = server.admin()
    added = admin.post(
        f"{ADMIN}/users", json={"name": "bo", "role": "hunter", "password": "correct horse battery"}
    )
    assert added.status_code == 200 and "password" not in added.json()
    generated = admin.post(f"{ADMIN}/users", json={"name": "cy", "role": "observer"})
    password = generated.json()["password"]
    short = admin.post(f"{ADMIN}/users", json={"name": "di", "role": "observer", "password": "x"})
    assert short.status_code == 400 and "at least 12 characters" in short.json()["error"]
    unknown = admin.post(f"{ADMIN}/users", json={"name": "ed", "role": "root"})
    assert unknown.status_code == 400 and "unknown role 'root'" in unknown.json()["error"]
    assert admin.post(f"{ADMIN}/users/bo/disable", json={}).status_code == 200

    signed = server.client().post(f"{ADMIN}/login", json={"user": "cy", "password": password})
    assert signed.status_code == 200 and signed.json()["role"] == "observer"
    disabled = server.client().post(
        f"{ADMIN}/login", json={"user": "bo", "password": "correct horse battery"}
    )
    assert disabled.status_code == 401

    entries = trail(server)
    actions = [(e["user"], e["action"], e["target"], e["status"]) for e in entries]
    assert ("admin", "POST /api/v1/admin/users", "", 200) in actions
    assert ("admin", "POST /api/v1/admin/users/{name}/disable", "name=bo", 200) in actions
    assert ("cy", "POST /api/v1/admin/login", "", 200) in actions
    assert ("bo", "POST /api/v1/admin/login", "", 401) in actions
    assert "correct horse" not in str(entries) and password not in str(entries)


def test_a_revocation_reaches_another_server_within_seconds(
    server: RunningServer, db_url: str, tmp_path: Path
) -> None:
    """Two servers on one PostgreSQL store: a token each knows (cached), and an enroll
    secret, revoked through one are refused by the other at its next read of the change
    events, long before its 10 s reload of the tokens."""
    if not db_url.startswith("postgresql"):
        pytest.skip("replicas share a PostgreSQL store")
    replica = server.replica(tmp_path / "replica")
    try:
        admin = server.admin()
        made = admin.post(f"{ADMIN}/tokens", json={"name": "roaming", "role": "observer"})
        token = made.json()["token"]
        secret = admin.post(f"{ADMIN}/secrets", json={"name": "roaming"}).json()["secret"]
        there = replica.client(token)
        assert there.get(f"{ADMIN}/hosts").status_code == 200  # now cached at the replica
        node = replica.node("roamer", "uuid-roamer")
        node.secret = secret
        assert "node_key" in node.enroll()

        assert admin.delete(f"{ADMIN}/tokens/roaming").status_code == 200
        assert admin.delete(f"{ADMIN}/secrets/roaming").status_code == 200
        revoked_at = time.monotonic()
        while there.get(f"{ADMIN}/hosts").status_code == 200:
            assert time.monotonic() - revoked_at < 5, "the replica still takes the token"
            time.sleep(0.1)
        late = replica.node("roamer-2", "uuid-roamer-2")
        late.secret = secret
        assert late.enroll() == {"error": "invalid enroll secret", "node_invalid": False}
    finally:
        replica.stop()


def test_a_token_list_says_when_each_token_was_last_used(server: RunningServer) -> None:
    """Finding a stale token to revoke needs its last use: written by the server's
    housekeeping (each second), at most once a minute per token, never moved back."""
    admin = server.admin()
    made = admin.post(f"{ADMIN}/tokens", json={"name": "idle", "ttl": "1d"})
    assert made.status_code == 200, made.text
    used = admin.post(f"{ADMIN}/tokens", json={"name": "busy", "ttl": "1d"})

    def last_used() -> dict[str, str | None]:
        listed = admin.get(f"{ADMIN}/tokens").json()["tokens"]
        return {t["name"]: t["last_used_at"] for t in listed}

    assert last_used()["busy"] is None
    before = int(time.time())
    assert server.client(used.json()["token"]).get(f"{ADMIN}/hosts").status_code == 200
    deadline = time.monotonic() + 15
    while (seen := last_used())["busy"] is None:
        assert time.monotonic() < deadline, "the use was never written"
        time.sleep(0.2)
    busy = seen["busy"]
    assert busy is not None and before <= parse_time(busy) <= time.time()
    assert seen["idle"] is None
