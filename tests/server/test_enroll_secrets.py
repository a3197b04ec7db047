"""Named enroll secrets through a real server with osqueryd-shaped enrollments, on SQLite
and PostgreSQL: a secret puts its hosts in its label (and so under the packs that
target it), a rotated or revoked secret enrolls nothing while hosts already enrolled
keep working, and every change is in the audit trail without a secret's value."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningServer

ADMIN = "/api/v1/admin"
PACK = {"queries": {"pids": {"query": "SELECT pid FROM processes;", "interval": 60}}}


def members(admin: Any, label: str) -> list[str]:
    shown = admin.get(f"{ADMIN}/labels/{label}")
    assert shown.status_code == 200, shown.text
    return [h["host_identifier"] for h in shown.json()["members"]]


def test_a_secret_labels_its_hosts_and_rotation_retires_the_old_value(
    server: RunningServer,
) -> None:
    admin = server.admin()
    unknown = admin.post(f"{ADMIN}/secrets", json={"name": "web", "label": "web-servers"})
    assert unknown.status_code == 404 and "no label 'web-servers'" in unknown.json()["error"]
    label = admin.post(f"{ADMIN}/labels", json={"name": "web-servers", "hosts": []})
    assert label.status_code == 200, label.text
    added = admin.post(f"{ADMIN}/secrets", json={"name": "web", "label": "web-servers"})
    assert added.status_code == 200, added.text
    web_secret = added.json()["secret"]
    assert added.json()["enroll_secret"]["label"] == "web-servers"
    applied = admin.post(
        f"{ADMIN}/packs/apply",
        json={"packs": [{"name": "webpack", "pack": PACK, "labels": ["web-servers"]}]},
    )
    assert applied.status_code == 200, applied.text

    web1 = server.node("web-1", "uuid-web-1")
    web1.secret = web_secret
    assert "node_key" in web1.enroll()
    plain = server.node("db-1", "uuid-db-1")  # the first start's default secret
    assert "node_key" in plain.enroll()
    assert members(admin, "web-servers") == ["web-1"]
    assert "webpack" in web1.call("/config").get("packs", {})
    assert "webpack" not in plain.call("/config").get("packs", {})

    rotated = admin.post(f"{ADMIN}/secrets/web/rotate", json={})
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    late = server.node("web-2", "uuid-web-2")
    late.secret = web_secret
    refused = late.enroll()
    assert refused.get("error") == "invalid enroll secret" and "node_key" not in refused
    late.secret = new_secret
    assert "node_key" in late.enroll()
    assert members(admin, "web-servers") == ["web-1", "web-2"]
    assert "packs" in web1.call("/config")  # enrolled with the old value: still working

    listed = {
        s["name"]: (s["label"], s["state"]) for s in admin.get(f"{ADMIN}/secrets").json()["secrets"]
    }
    assert listed == {
        "default": (None, "live"),
        rotated.json()["old"]: ("web-servers", "revoked"),
        "web": ("web-servers", "live"),
    }


def test_a_revoked_secret_enrolls_nothing_and_its_hosts_keep_working(
    server: RunningServer,
) -> None:
    admin = server.admin()
    node = server.node()
    assert "node_key" in node.enroll()
    kept = admin.post(f"{ADMIN}/secrets/default/rotate", json={"keep_old": True})
    assert kept.status_code == 200, kept.text
    old_name = kept.json()["old"]
    again = server.node("jumpvm-2", "uuid-jumpvm-2")
    assert "node_key" in again.enroll()  # the old value still enrolls, as default~N

    revoked = admin.delete(f"{ADMIN}/secrets/{old_name}")
    assert revoked.status_code == 200, revoked.text
    third = server.node("jumpvm-3", "uuid-jumpvm-3")
    assert third.enroll() == {"error": "invalid enroll secret", "node_invalid": False}  # at once
    assert "packs" in node.call("/config")  # enrolled with it: still working
    assert "queries" in node.call("/distributed/read")

    twice = admin.delete(f"{ADMIN}/secrets/{old_name}")
    assert twice.status_code == 400 and "already revoked" in twice.json()["error"]
    missing = admin.delete(f"{ADMIN}/secrets/nope")
    assert missing.status_code == 404
    short = admin.post(f"{ADMIN}/secrets", json={"name": "ci", "secret": "short"})
    assert short.status_code == 400 and "at least 16 characters" in short.json()["error"]
    dynamic = admin.post(f"{ADMIN}/labels", json={"name": "dyn", "query": "SELECT 1;"})
    assert dynamic.status_code == 200, dynamic.text
    refused = admin.post(f"{ADMIN}/secrets", json={"name": "ci", "label": "dyn"})
    assert refused.status_code == 400 and "is dynamic" in refused.json()["error"]

    given = "a-secret-made-elsewhere-0001"
    added = admin.post(f"{ADMIN}/secrets", json={"name": "ci", "secret": given})
    assert added.status_code == 200 and "secret" not in added.json()
    trail = admin.get(f"{ADMIN}/audit").json()["audit"]
    changes = [(e["user"], e["action"], e["target"], e["status"]) for e in trail]
    assert ("admin", "POST /api/v1/admin/secrets/{name}/rotate", "name=default", 200) in changes
    assert ("admin", "DELETE /api/v1/admin/secrets/{name}", f"name={old_name}", 200) in changes
    assert ("admin", "POST /api/v1/admin/secrets", "", 200) in changes
    assert given not in str(trail) and kept.json()["secret"] not in str(trail)
    assert server.secret not in str(trail)
