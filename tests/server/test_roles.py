"""Every admin route decides who may call it: the route table is walked, each route
must declare a role, the very role pinned here for it, and each is called as an
observer, a hunter and an admin through a real server: a caller below the declared
role gets 403 with a JSON error, one at or above it gets through the role check. A
token's role is capped by its user's current role, and a disabled user's tokens are
refused."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fleetctl.roles import Role
from fleetctl.server.access import required_role
from fleetctl.server.auth import new_secret
from tests.conftest import RunningServer
from tests.server.test_error_answers import admin_routes, fill, methods

ADMIN = "/api/v1/admin"
OPEN = {f"{ADMIN}/login"}  # signing in is what gets a token

# Every admin route's lowest role, as the specification sets it: a role lowered (or
# raised) by mistake, a route added without a decision here, or one removed, fails.
PINNED = {
    ("GET", f"{ADMIN}/hosts"): Role.OBSERVER,
    ("GET", f"{ADMIN}/hosts/{{ref:path}}"): Role.OBSERVER,
    ("DELETE", f"{ADMIN}/hosts/{{ref:path}}"): Role.ADMIN,
    ("GET", f"{ADMIN}/results"): Role.OBSERVER,
    ("GET", f"{ADMIN}/status-logs"): Role.OBSERVER,
    ("GET", f"{ADMIN}/data-loss"): Role.OBSERVER,
    ("GET", f"{ADMIN}/carves"): Role.OBSERVER,
    ("POST", f"{ADMIN}/sql"): Role.HUNTER,
    ("GET", f"{ADMIN}/sql/schema"): Role.OBSERVER,
    ("GET", f"{ADMIN}/packs"): Role.OBSERVER,
    ("POST", f"{ADMIN}/packs/apply"): Role.ADMIN,
    ("POST", f"{ADMIN}/packs/diff"): Role.HUNTER,
    ("GET", f"{ADMIN}/packs/{{name}}"): Role.OBSERVER,
    ("DELETE", f"{ADMIN}/packs/{{name}}"): Role.ADMIN,
    ("GET", f"{ADMIN}/labels"): Role.OBSERVER,
    ("POST", f"{ADMIN}/labels"): Role.ADMIN,
    ("POST", f"{ADMIN}/labels/diff"): Role.HUNTER,
    ("GET", f"{ADMIN}/labels/{{name}}"): Role.OBSERVER,
    ("DELETE", f"{ADMIN}/labels/{{name}}"): Role.ADMIN,
    ("GET", f"{ADMIN}/findings"): Role.OBSERVER,
    ("GET", f"{ADMIN}/findings/{{id}}"): Role.OBSERVER,
    ("POST", f"{ADMIN}/findings/{{id}}/ack"): Role.HUNTER,
    ("POST", f"{ADMIN}/findings/{{id}}/suppress"): Role.HUNTER,
    ("GET", f"{ADMIN}/baseline"): Role.OBSERVER,
    ("PUT", f"{ADMIN}/baseline"): Role.ADMIN,
    ("GET", f"{ADMIN}/trace"): Role.OBSERVER,
    ("GET", f"{ADMIN}/processes"): Role.OBSERVER,  # the host page's tree, for every role
    ("POST", f"{ADMIN}/detect"): Role.HUNTER,
    ("POST", f"{ADMIN}/detect/jobs"): Role.HUNTER,
    ("GET", f"{ADMIN}/detect/jobs"): Role.OBSERVER,
    ("GET", f"{ADMIN}/detect/jobs/{{id}}"): Role.OBSERVER,
    ("DELETE", f"{ADMIN}/detect/jobs/{{id}}"): Role.HUNTER,
    ("POST", f"{ADMIN}/detect/jobs/{{id}}/restart"): Role.HUNTER,
    ("GET", f"{ADMIN}/detection/status"): Role.OBSERVER,
    ("POST", f"{ADMIN}/queries"): Role.HUNTER,
    ("GET", f"{ADMIN}/queries/{{id:int}}"): Role.HUNTER,
    ("GET", f"{ADMIN}/hunts"): Role.OBSERVER,
    ("POST", f"{ADMIN}/hunts"): Role.HUNTER,
    ("GET", f"{ADMIN}/hunts/{{name}}"): Role.OBSERVER,
    ("POST", f"{ADMIN}/hunts/{{name}}/pause"): Role.HUNTER,
    ("POST", f"{ADMIN}/hunts/{{name}}/resume"): Role.HUNTER,
    ("POST", f"{ADMIN}/hunts/{{name}}/cancel"): Role.HUNTER,
    ("DELETE", f"{ADMIN}/hunts/{{name}}"): Role.HUNTER,
    ("GET", f"{ADMIN}/hunts/{{name}}/results"): Role.OBSERVER,
    ("GET", f"{ADMIN}/coverage"): Role.OBSERVER,
    ("POST", f"{ADMIN}/validations"): Role.HUNTER,
    ("GET", f"{ADMIN}/validations"): Role.OBSERVER,
    ("GET", f"{ADMIN}/audit"): Role.ADMIN,
    ("GET", f"{ADMIN}/audit/verify"): Role.ADMIN,
    ("POST", f"{ADMIN}/tokens"): Role.OBSERVER,
    ("GET", f"{ADMIN}/tokens"): Role.OBSERVER,
    ("DELETE", f"{ADMIN}/tokens/{{name}}"): Role.OBSERVER,
    ("GET", f"{ADMIN}/users"): Role.ADMIN,
    ("POST", f"{ADMIN}/users"): Role.ADMIN,
    ("GET", f"{ADMIN}/users/{{name}}"): Role.ADMIN,
    ("POST", f"{ADMIN}/users/{{name}}/role"): Role.ADMIN,
    ("POST", f"{ADMIN}/users/{{name}}/disable"): Role.ADMIN,
    ("POST", f"{ADMIN}/users/{{name}}/enable"): Role.ADMIN,
    ("POST", f"{ADMIN}/users/{{name}}/password"): Role.ADMIN,
    ("GET", f"{ADMIN}/secrets"): Role.ADMIN,
    ("POST", f"{ADMIN}/secrets"): Role.ADMIN,
    ("POST", f"{ADMIN}/secrets/{{name}}/rotate"): Role.ADMIN,
    ("DELETE", f"{ADMIN}/secrets/{{name}}"): Role.ADMIN,
    ("GET", f"{ADMIN}/sql/saved"): Role.HUNTER,
    ("POST", f"{ADMIN}/sql/saved"): Role.HUNTER,
    ("DELETE", f"{ADMIN}/sql/saved/{{name}}"): Role.HUNTER,
}


def make_token(server: RunningServer, user: str, role: Role, token_role: Role | None = None) -> str:
    """A token of ``user`` (added with ``role`` if new), made through the admin API."""
    admin = server.admin()
    if admin.get(f"{ADMIN}/users/{user}").status_code == 404:
        added = admin.post(f"{ADMIN}/users", json={"name": user, "role": role.label})
        assert added.status_code == 200, added.text
    body = {"name": new_secret(6), "user": user, "role": (token_role or role).label}
    made = admin.post(f"{ADMIN}/tokens", json=body)
    assert made.status_code == 200, made.text
    token: str = made.json()["token"]
    return token


@pytest.fixture
def callers(server: RunningServer) -> Iterator[dict[Role, httpx.Client]]:
    yield {role: server.client(make_token(server, role.label, role)) for role in Role}


def test_every_admin_route_declares_a_role_and_holds_to_it(
    server: RunningServer, callers: dict[Role, httpx.Client]
) -> None:
    routes = [r for r in admin_routes(server) if r.path not in OPEN]
    undecided = [f"{methods(r)} {r.path}" for r in routes if required_role(r.endpoint) is None]
    assert undecided == [], "admin routes without a role"
    declared = {(m, r.path): required_role(r.endpoint) for r in routes for m in methods(r)}
    assert declared == PINNED

    for role in Role:  # lowest first: what an admin changes cannot hide a refusal
        for route in routes:
            needed = required_role(route.endpoint)
            assert needed is not None
            path = fill(route, {name: "1" for name in route.param_convertors})
            for method in methods(route):
                answer = callers[role].request(method, path, json={} if method != "GET" else None)
                what = (role.label, method, route.path, answer.status_code, answer.text[:200])
                assert answer.headers["content-type"] == "application/json", what
                assert answer.status_code != 401, what
                if role < needed:
                    assert answer.status_code == 403, what
                    assert f"{needed.label} role required" in answer.json()["error"], what
                else:
                    assert answer.status_code != 403, what


def test_a_token_is_capped_by_its_users_role_and_refused_once_disabled(
    server: RunningServer,
) -> None:
    sql = {"sql": "SELECT 1 AS n"}
    low = server.client(make_token(server, "ana", Role.HUNTER, token_role=Role.OBSERVER))
    refused = low.post(f"{ADMIN}/sql", json=sql)
    assert refused.status_code == 403 and "hunter role required" in refused.json()["error"]
    assert low.get(f"{ADMIN}/hosts").status_code == 200

    admin = server.admin()
    above = admin.post(f"{ADMIN}/tokens", json={"name": "up", "user": "ana", "role": "admin"})
    assert above.status_code == 403 and "at most hunter" in above.json()["error"]
    high = server.client(make_token(server, "ana", Role.HUNTER))
    assert high.post(f"{ADMIN}/sql", json=sql).status_code == 200
    assert high.get(f"{ADMIN}/audit").status_code == 403

    assert admin.post(f"{ADMIN}/users/ana/role", json={"role": "observer"}).status_code == 200
    demoted = high.post(f"{ADMIN}/sql", json=sql)
    assert demoted.status_code == 403 and "ana is observer" in demoted.json()["error"]
    assert admin.post(f"{ADMIN}/users/ana/disable", json={}).status_code == 200
    gone = high.get(f"{ADMIN}/hosts")
    assert gone.status_code == 401 and "disabled" in gone.json()["error"]
    assert admin.post(f"{ADMIN}/users/ana/enable", json={}).status_code == 200
    assert high.get(f"{ADMIN}/hosts").status_code == 200


def test_the_last_enabled_admin_stays_one(server: RunningServer) -> None:
    admin = server.admin()
    for path, body in [("/users/admin/disable", {}), ("/users/admin/role", {"role": "hunter"})]:
        refused = admin.post(f"{ADMIN}{path}", json=body)
        assert refused.status_code == 400 and "last enabled admin" in refused.json()["error"]
    assert admin.get(f"{ADMIN}/audit").status_code == 200


def test_learning_writes_the_baseline_so_only_an_admin_may(
    server: RunningServer, callers: dict[Role, httpx.Client]
) -> None:
    """``POST /detect`` is a hunter's (judge hosts now), but with ``learn`` it writes
    every current path into the baseline: an admin's edit, as the baseline route is."""
    learn = {"learn": True}
    refused = callers[Role.HUNTER].post(f"{ADMIN}/detect", json=learn)
    assert refused.status_code == 403, refused.text
    assert "admin role required" in refused.json()["error"]
    assert callers[Role.HUNTER].post(f"{ADMIN}/detect", json={}).status_code == 200
    learned = callers[Role.ADMIN].post(f"{ADMIN}/detect", json=learn)
    assert learned.status_code == 200 and learned.json()["learned"] is True, learned.text
