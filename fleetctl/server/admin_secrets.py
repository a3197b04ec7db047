"""Admin API: enroll secrets (admin only). ``POST /secrets`` adds a named one (generated
unless given; shown once), optionally putting the hosts it enrolls in a manual label,
as Fleet's team secrets do; ``GET /secrets`` lists them; ``POST /secrets/{name}/rotate``
gives the name a new secret (the old one revoked, or kept enrolling under ``name~id``
with ``keep_old`` until revoked); ``DELETE /secrets/{name}`` revokes one.

A revoked secret enrolls nothing, at once in this process and in the others at their
next read of the change events; hosts already enrolled with it keep their node keys.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.routing import Route

from fleetctl.errors import BadRequest, NotFound
from fleetctl.roles import Role
from fleetctl.server.access import access_changed, requires
from fleetctl.server.admin_api import admin_endpoint, admin_write_endpoint
from fleetctl.server.admin_params import column_length, flag_param, required_text, text_param
from fleetctl.server.auth import digest, new_secret
from fleetctl.timeutil import iso
from storage import enroll_secrets
from storage import labels as label_store
from storage.enroll_secrets import SecretInfo

PREFIX = "/api/v1/admin"


def secret_json(secret: SecretInfo) -> dict[str, Any]:
    return {
        "name": secret.name,
        "label": secret.label,
        "state": "revoked" if secret.revoked_at is not None else "live",
        "created_at": iso(secret.created_at),
        "revoked_at": iso(secret.revoked_at),
    }


def _label_id(session: Session, name: str | None) -> int | None:
    """The manual label a secret's hosts join."""
    if name is None:
        return None
    label = label_store.get_label(session, name)
    if label is None:
        raise NotFound(
            f"no label {name!r}: create it with `fleetctl labels apply {name} --hosts ''`"
        )
    if label.query is not None:
        raise BadRequest(f"label {name!r} is dynamic (its query decides its hosts): name another")
    return label.id


def _secret_of(session: Session, request: Request) -> enroll_secrets.EnrollSecret:
    name = request.path_params["name"]
    found = enroll_secrets.find_secret(session, name)
    if found is None:
        raise NotFound(f"no enroll secret named {name!r}")
    return found


@requires(Role.ADMIN)
@admin_endpoint
def list_secrets(request: Request, session: Session) -> dict[str, Any]:
    return {"secrets": [secret_json(s) for s in enroll_secrets.secrets(session)]}


@requires(Role.ADMIN)
@admin_write_endpoint
def add_secret(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = required_text(body, "name", max_length=column_length("EnrollSecret.name"))
    if "~" in name:
        raise BadRequest("'~' is kept for rotated secrets: name a secret without it")
    given = text_param(body, "secret", max_length=1024)
    if given is not None and len(given) < 16:
        raise BadRequest("an enroll secret must have at least 16 characters")
    value = given or new_secret()
    now = int(time.time())
    label = _label_id(session, text_param(body, "label", max_length=255))
    try:
        enroll_secrets.add_secret(session, name, digest(value), label, now)
    except enroll_secrets.Conflict as exc:
        raise BadRequest(str(exc)) from None
    shown = next(s for s in enroll_secrets.secrets(session) if s.name == name)
    return {"enroll_secret": secret_json(shown)} | ({} if given else {"secret": value})


@requires(Role.ADMIN)
@admin_write_endpoint
def rotate_secret(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    old = _secret_of(session, request)
    if old.revoked_at is not None:
        raise BadRequest(f"enroll secret {old.name!r} is revoked: add a new one instead")
    name, label_id, now = old.name, old.label_id, int(time.time())
    keep_old = flag_param(body, "keep_old")
    retired = enroll_secrets.retire(session, old, now, revoke_it=not keep_old)
    value = new_secret()
    enroll_secrets.add_secret(session, name, digest(value), label_id, now)
    access_changed(request, session, now)
    shown = next(s for s in enroll_secrets.secrets(session) if s.name == name)
    return {"enroll_secret": secret_json(shown), "secret": value, "old": retired}


@requires(Role.ADMIN)
@admin_write_endpoint
def revoke_secret(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    secret = _secret_of(session, request)
    if secret.revoked_at is not None:
        raise BadRequest(f"enroll secret {secret.name!r} is already revoked")
    now = int(time.time())
    enroll_secrets.revoke(session, secret, now)
    access_changed(request, session, now)
    return {"name": secret.name, "revoked_at": iso(now)}


routes = [
    Route(f"{PREFIX}/secrets", list_secrets, methods=["GET"]),
    Route(f"{PREFIX}/secrets", add_secret, methods=["POST"]),
    Route(f"{PREFIX}/secrets/{{name}}/rotate", rotate_secret, methods=["POST"]),
    Route(f"{PREFIX}/secrets/{{name}}", revoke_secret, methods=["DELETE"]),
]
