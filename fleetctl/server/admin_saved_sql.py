"""Admin API for saved analyst queries: SQL kept under a name for every hunter to run.

The SQL must read like a query (it starts with SELECT, WITH or VALUES); it is checked in
full when it runs (``POST /sql``), as any analyst SQL is, so a saved query never runs
with more than the analyst's rights.
"""

from __future__ import annotations

import re
import time
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.errors import BadRequest, NotFound
from fleetctl.roles import Role
from fleetctl.server.access import caller_of, requires
from fleetctl.server.admin_api import PREFIX, admin_endpoint, admin_write_endpoint
from fleetctl.server.admin_params import column_length, required_text, text_param
from fleetctl.timeutil import iso
from storage import saved_queries as saved_store

MAX_SQL = 100_000
QUERY_START = re.compile(r"\s*(--[^\n]*\n\s*|/\*.*?\*/\s*)*(select|with|values)\b", re.I | re.S)


@requires(Role.HUNTER)
@admin_endpoint
def list_saved(request: Request, session: Session) -> dict[str, Any]:
    return {
        "queries": [
            {
                "name": q.name,
                "sql": q.sql,
                "description": q.description,
                "saved_by": q.saved_by,
                "saved_at": iso(q.saved_at),
            }
            for q in saved_store.list_queries(session)
        ]
    }


@requires(Role.HUNTER)
@admin_write_endpoint
def save(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Keep ``sql`` under ``name`` (with an optional ``description``); a name saved
    again is replaced."""
    name = required_text(body, "name", max_length=column_length("SavedQuery.name"))
    sql = required_text(body, "sql", max_length=MAX_SQL)
    if not QUERY_START.match(sql):
        raise BadRequest("'sql' must be a query: SELECT, WITH or VALUES")
    description = text_param(body, "description", max_length=4096, default="")
    who = caller_of(request).user
    action = saved_store.save_query(session, name, sql, description, who, int(time.time()))
    return {"name": name, "action": action}


@requires(Role.HUNTER)
@admin_write_endpoint
def delete(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = request.path_params["name"]
    if not saved_store.delete_query(session, name):
        raise NotFound(f"no saved query {name!r}")
    return {"name": name, "action": "deleted"}


routes = [
    Route(f"{PREFIX}/sql/saved", list_saved, methods=["GET"]),
    Route(f"{PREFIX}/sql/saved", save, methods=["POST"]),
    Route(f"{PREFIX}/sql/saved/{{name}}", delete, methods=["DELETE"]),
]
