"""Saved analyst queries over the admin API: shared under a name, replaced when saved
again, deleted, refused when malformed, and recorded in the audit trail."""

from __future__ import annotations

from tests.conftest import RunningServer

SAVED = "/api/v1/admin/sql/saved"


def test_saved_queries_are_shared_replaced_and_deleted(server: RunningServer) -> None:
    admin = server.admin()
    assert admin.get(SAVED).json() == {"queries": []}
    sql = "SELECT host, pid FROM hunt_processes WHERE removed_at IS NULL"
    made = admin.post(SAVED, json={"name": "open shells", "sql": sql, "description": "<b>x</b>"})
    assert made.json() == {"name": "open shells", "action": "created"}
    again = admin.post(SAVED, json={"name": "open shells", "sql": sql + " LIMIT 5"})
    assert again.json() == {"name": "open shells", "action": "updated"}
    (kept,) = admin.get(SAVED).json()["queries"]
    assert (kept["name"], kept["sql"], kept["description"], kept["saved_by"]) == (
        "open shells",
        sql + " LIMIT 5",
        "",
        "admin",  # the user of the CLI's token
    )
    assert admin.delete(f"{SAVED}/open shells").json() == {
        "name": "open shells",
        "action": "deleted",
    }
    gone = admin.delete(f"{SAVED}/open shells")
    assert (gone.status_code, gone.json()) == (404, {"error": "no saved query 'open shells'"})
    trail = [e["action"] for e in admin.get("/api/v1/admin/audit").json()["audit"]]
    assert trail.count(f"POST {SAVED}") == 2
    assert trail.count(f"DELETE {SAVED}/{{name}}") == 2


def test_bad_saved_queries_get_clear_errors(server: RunningServer) -> None:
    admin = server.admin()
    for body, message in [
        ({"sql": "SELECT 1"}, "'name' is required"),
        ({"name": "x"}, "'sql' is required"),
        ({"name": "x" * 129, "sql": "SELECT 1"}, "'name' is longer than 128 characters"),
        ({"name": "x", "sql": 5}, "'sql' must be a string"),
        (
            {"name": "x", "sql": "DELETE FROM hosts"},
            "'sql' must be a query: SELECT, WITH or VALUES",
        ),
    ]:
        answer = admin.post(SAVED, json=body)
        assert (answer.status_code, answer.json()["error"]) == (400, message), body
    assert admin.get(SAVED).json() == {"queries": []}
