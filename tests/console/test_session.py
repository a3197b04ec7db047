"""The console's session cookie over real TLS: sign-in, what the cookie allows, CSRF and
origin refusals, forged and expired cookies, sign-out, and the security headers."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import delete

from fleetctl.cli.client import ssl_context
from fleetctl.server import console_session
from fleetctl.server.auth import digest
from storage.models import ApiToken, StoreSecret
from storage.store_secrets import stored_secret
from tests.conftest import RunningServer

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def signed_in(server: RunningServer) -> tuple[httpx.Client, str]:
    client = server.client()
    answer = client.post("/console/sign-in", json={"token": server.token})
    assert answer.status_code == 200, answer.text
    return client, answer.json()["csrf"]


def signing_key(server: RunningServer) -> str:
    (row,) = server.query(
        StoreSecret.__table__.select().where(StoreSecret.name == console_session.SIGNING_SECRET)
    )
    return str(row.value)


def test_sign_in_sets_a_strict_cookie_and_the_api_accepts_it(server: RunningServer) -> None:
    client = server.client()
    refused = client.post("/console/sign-in", json={"token": "not-a-token"})
    assert (refused.status_code, refused.json()) == (
        401,
        {"error": "missing or invalid admin token"},
    )
    assert client.get("/api/v1/admin/hosts").status_code == 401

    answer = client.post("/console/sign-in", json={"token": server.token})
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{console_session.COOKIE}=")
    for attribute in ("HttpOnly", "Secure", "SameSite=strict", "Path=/", "Max-Age=28800"):
        assert attribute.lower() in cookie.lower(), cookie
    assert server.token not in cookie  # the cookie holds a digest, never the token
    held = answer.json()
    assert (held["user"], held["token"], held["role"]) == ("admin", "fleetctl-cli", "admin")
    assert held["csrf"] and held["expires"]

    assert client.get("/api/v1/admin/hosts").json() == {"hosts": []}
    assert client.get("/console/session").json() == held


def test_a_change_by_cookie_needs_the_csrf_nonce_and_this_origin(server: RunningServer) -> None:
    client, csrf = signed_in(server)
    sql = {"sql": "SELECT 1 AS one"}

    bare = client.post("/api/v1/admin/sql", json=sql)
    assert (bare.status_code, bare.json()) == (
        403,
        {"error": "missing or wrong X-CSRF-Token header"},
    )
    wrong = client.post("/api/v1/admin/sql", json=sql, headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403
    elsewhere = client.post(
        "/api/v1/admin/sql",
        json=sql,
        headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"},
    )
    assert (elsewhere.status_code, elsewhere.json()) == (
        403,
        {"error": "cross-origin request refused"},
    )
    cross_site = client.post(
        "/api/v1/admin/sql",
        json=sql,
        headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"},
    )
    assert cross_site.status_code == 403

    ok = client.post(
        "/api/v1/admin/sql",
        json=sql,
        headers={"X-CSRF-Token": csrf, "Origin": server.url, "Sec-Fetch-Site": "same-origin"},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["rows"] == [{"one": 1}]

    # Refusals are in the audit trail, as refused tokens are.
    trail = server.admin().get("/api/v1/admin/audit").json()
    calls = [
        (e["status"], e["user"]) for e in trail["audit"] if e["action"] == "POST /api/v1/admin/sql"
    ]
    assert sorted(calls) == [(200, "admin")] + [(403, "-")] * 4


def test_a_forged_or_expired_cookie_is_refused(server: RunningServer) -> None:
    signed_in(server)  # the signing key exists in the store
    key = signing_key(server)
    token_digest = digest(server.token)
    now = int(time.time())

    def cookie_of(signer_key: str, payload: dict[str, Any]) -> httpx.Client:
        client = server.client()
        value = console_session.serializer(signer_key).dumps(payload)
        client.cookies.set(console_session.COOKIE, value, domain="127.0.0.1")
        return client

    valid = {"t": token_digest, "e": now + 3600, "c": "nonce", "o": False}
    assert cookie_of(key, valid).get("/api/v1/admin/hosts").status_code == 200
    forged = cookie_of("another key", valid).get("/api/v1/admin/hosts")
    assert (forged.status_code, forged.json()) == (401, {"error": "missing or invalid admin token"})
    expired = cookie_of(key, valid | {"e": now - 1}).get("/api/v1/admin/hosts")
    assert expired.status_code == 401
    unknown = cookie_of(key, valid | {"t": digest("some other token")})
    assert unknown.get("/api/v1/admin/hosts").status_code == 401
    garbled = server.client()
    garbled.cookies.set(console_session.COOKIE, "garbage.value", domain="127.0.0.1")
    assert garbled.get("/api/v1/admin/hosts").status_code == 401


def test_the_key_is_the_stores_and_lasts(server: RunningServer, tmp_path: Any) -> None:
    """Another server process on the same store accepts the cookie (PostgreSQL: a
    replica; on SQLite a second process would share the file the same way)."""
    client, _ = signed_in(server)
    engine_key = signing_key(server)
    from storage.engine import make_engine, make_sessionmaker, session_scope

    engine = make_engine(server.settings.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            assert stored_secret(session, console_session.SIGNING_SECRET) == engine_key
    finally:
        engine.dispose()
    if not server.settings.db_url.startswith("postgresql"):
        return
    replica = server.replica(tmp_path / "replica")
    try:
        other = httpx.Client(base_url=replica.url, verify=ssl_context(replica.ca), timeout=30)
        other.cookies = client.cookies
        replica.clients.append(other)
        assert other.get("/api/v1/admin/hosts").status_code == 200
    finally:
        replica.stop()


def test_sign_out_needs_the_nonce_and_clears_the_cookie(server: RunningServer) -> None:
    client, csrf = signed_in(server)
    refused = client.post("/console/sign-out")
    assert refused.status_code == 403
    assert client.get("/api/v1/admin/hosts").status_code == 200
    done = client.post("/console/sign-out", headers={"X-CSRF-Token": csrf})
    assert done.json() == {"signed_out": True}
    assert (
        'fleetctl_console=""' in done.headers["set-cookie"]
        or "Max-Age=0" in done.headers["set-cookie"]
    )
    assert client.get("/api/v1/admin/hosts").status_code == 401
    assert client.get("/console/session").status_code == 401


@pytest.mark.parametrize(
    "path", ["/", "/console/static/app.js", "/console/static/console.css", "/api/v1/admin/hosts"]
)
def test_security_headers_on_every_answer(server: RunningServer, path: str) -> None:
    answer = server.client().get(path)
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    if path.endswith(".js"):
        assert answer.headers["content-type"].startswith("text/javascript")
    if path == "/":
        assert '<script type="module" src="/console/static/app.js">' in answer.text
        assert "<script>" not in answer.text  # nothing inline: the CSP would refuse it


def test_bad_sign_in_bodies_get_clear_errors(server: RunningServer) -> None:
    client = server.client()
    for body, message in [
        ({}, "'token' is required"),
        ({"token": 5}, "'token' must be a string"),
        ({"token": ""}, "'token' is required"),
        ({"user": "admin"}, "'password' is required"),
        ({"user": ["admin"], "password": "x"}, "'user' must be a string"),
    ]:
        answer = client.post("/console/sign-in", json=body)
        assert (answer.status_code, answer.json()) == (400, {"error": message})
    huge = client.post("/console/sign-in", json={"token": "x" * 10_000})
    assert huge.status_code == 413
    elsewhere = client.post(
        "/console/sign-in", json={"token": server.token}, headers={"Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403


def test_a_revoked_token_ends_its_console_sessions(server: RunningServer) -> None:
    client, _ = signed_in(server)
    server.query(
        delete(ApiToken).where(ApiToken.token_hash == digest(server.token)).returning(ApiToken.id)
    )
    deadline = time.monotonic() + 20  # the server re-reads the tokens every 10 s
    while client.get("/api/v1/admin/hosts").status_code == 200:
        assert time.monotonic() < deadline, "the revoked token's cookie still works"
        time.sleep(0.5)
    assert client.get("/console/session").status_code == 401


def users_of_each_role(server: RunningServer) -> dict[str, str]:
    """An observer and a hunter with passwords, made through the admin API."""
    admin = server.admin()
    passwords = {}
    for role in ("observer", "hunter"):
        made = admin.post("/api/v1/admin/users", json={"name": f"ana-{role}", "role": role})
        assert made.status_code == 200, made.text
        passwords[role] = made.json()["password"]
    return passwords


def test_a_password_sign_in_acts_with_the_users_role_and_sign_out_revokes_it(
    server: RunningServer,
) -> None:
    passwords = users_of_each_role(server)
    client = server.client()
    wrong = client.post("/console/sign-in", json={"user": "ana-observer", "password": "nope"})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "wrong user name or password"})

    answer = client.post(
        "/console/sign-in", json={"user": "ana-observer", "password": passwords["observer"]}
    )
    assert answer.status_code == 200, answer.text
    held = answer.json()
    assert (held["user"], held["role"]) == ("ana-observer", "observer")
    assert held["token"].startswith("console-")
    assert passwords["observer"] not in answer.headers["set-cookie"]

    # The observer reads, and is refused what only a hunter may do, by role (403).
    assert client.get("/api/v1/admin/hosts").status_code == 200
    sql = client.post(
        "/api/v1/admin/sql", json={"sql": "SELECT 1"}, headers={"X-CSRF-Token": held["csrf"]}
    )
    assert (sql.status_code, sql.json()["error"]) == (
        403,
        "hunter role required; ana-observer is observer",
    )

    # Signing out revokes the session's own token: the cookie is useless even if kept.
    kept = dict(client.cookies)
    done = client.post("/console/sign-out", headers={"X-CSRF-Token": held["csrf"]})
    assert done.json() == {"signed_out": True}
    replay = server.client()
    for name, value in kept.items():
        replay.cookies.set(name, value, domain="127.0.0.1")
    assert replay.get("/api/v1/admin/hosts").status_code == 401
    tokens = server.admin().get("/api/v1/admin/tokens", params={"user": "ana-observer"}).json()
    assert [(t["name"], t["state"]) for t in tokens["tokens"]] == [(held["token"], "revoked")]

    # Every sign-in is in the trail, and no password is.
    trail = server.admin().get("/api/v1/admin/audit").json()["audit"]
    sign_ins = [(e["user"], e["status"]) for e in trail if e["action"] == "POST /console/sign-in"]
    assert sorted(sign_ins) == [("ana-observer", 200), ("ana-observer", 401)]
    assert passwords["observer"] not in str(trail)


def test_a_disabled_user_is_signed_out_of_the_console(server: RunningServer) -> None:
    passwords = users_of_each_role(server)
    client = server.client()
    answer = client.post(
        "/console/sign-in", json={"user": "ana-hunter", "password": passwords["hunter"]}
    )
    assert answer.status_code == 200, answer.text
    assert client.get("/console/session").json()["role"] == "hunter"
    disabled = server.admin().post("/api/v1/admin/users/ana-hunter/disable", json={})
    assert disabled.status_code == 200, disabled.text
    assert client.get("/api/v1/admin/hosts").status_code == 401
    assert client.get("/console/session").status_code == 401
