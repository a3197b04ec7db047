"""Admin API: users (admin only). ``POST /users`` adds one (with a generated password
unless one is given, shown once), ``GET /users`` and ``GET /users/{name}`` show them,
``POST /users/{name}/role``, ``/disable``, ``/enable`` and ``/password`` change one.

Disabling a user or lowering their role takes effect at once in this process and in
the others at their next read of the change events (``access.access_changed``).
The last enabled admin can be neither disabled nor demoted: someone must be able to
manage the rest.
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
from fleetctl.server.admin_params import column_length, required_text, text_param
from fleetctl.server.admin_tokens import token_json
from fleetctl.server.passwords import hash_password, new_password
from fleetctl.timeutil import iso
from storage import users as user_store
from storage.users import User

PREFIX = "/api/v1/admin"


def user_json(user: User) -> dict[str, Any]:
    return {
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled,
        "has_password": bool(user.password_hash),
        "created_at": iso(user.created_at),
    }


def _user(session: Session, request: Request) -> User:
    name = request.path_params["name"]
    user = user_store.find_user(session, name)
    if user is None:
        raise NotFound(f"no user named {name!r}")
    return user


def _password(body: dict[str, Any]) -> tuple[str, bool]:
    """The password given, or a generated one (and whether it was generated)."""
    given = text_param(body, "password", max_length=1024)
    return (given, False) if given else (new_password(), True)


def _keep_an_admin(session: Session, user: User) -> None:
    """Refuse a change that would leave no enabled admin."""
    others = [
        u for u in user_store.list_users(session)
        if u.id != user.id and u.role == Role.ADMIN.label and not u.disabled
    ]  # fmt: skip
    if user.role == Role.ADMIN.label and not user.disabled and not others:
        raise BadRequest(f"{user.name} is the last enabled admin: make another admin first")


@requires(Role.ADMIN)
@admin_endpoint
def list_users(request: Request, session: Session) -> dict[str, Any]:
    return {"users": [user_json(u) for u in user_store.list_users(session)]}


@requires(Role.ADMIN)
@admin_endpoint
def show_user(request: Request, session: Session) -> dict[str, Any]:
    user = _user(session, request)
    now = int(time.time())
    tokens = [token_json(t, now) for t in user_store.tokens(session, user)]
    return {"user": user_json(user), "tokens": tokens}


@requires(Role.ADMIN)
@admin_write_endpoint
def add_user(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    name = required_text(body, "name", max_length=column_length("User.name"))
    role = Role.named(required_text(body, "role", max_length=16))
    password, generated = _password(body)
    try:
        user = user_store.add_user(
            session, name, role.label, hash_password(password), int(time.time())
        )
    except user_store.Conflict as exc:
        raise BadRequest(str(exc)) from None
    return {"user": user_json(user)} | ({"password": password} if generated else {})


@requires(Role.ADMIN)
@admin_write_endpoint
def set_role(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    user = _user(session, request)
    role = Role.named(required_text(body, "role", max_length=16))
    if role < Role.ADMIN:
        _keep_an_admin(session, user)
    user_store.set_role(session, user, role.label)
    access_changed(request, session, int(time.time()))
    return {"user": user_json(user)}


def _set_disabled(request: Request, session: Session, disabled: bool) -> dict[str, Any]:
    user = _user(session, request)
    if disabled:
        _keep_an_admin(session, user)
    user_store.set_disabled(session, user, disabled)
    access_changed(request, session, int(time.time()))
    return {"user": user_json(user)}


@requires(Role.ADMIN)
@admin_write_endpoint
def disable_user(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    """Refuse the user's sign-ins and every token of theirs, at once; kept for the trail."""
    return _set_disabled(request, session, True)


@requires(Role.ADMIN)
@admin_write_endpoint
def enable_user(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    return _set_disabled(request, session, False)


@requires(Role.ADMIN)
@admin_write_endpoint
def set_password(request: Request, session: Session, body: dict[str, Any]) -> dict[str, Any]:
    user = _user(session, request)
    password, generated = _password(body)
    user_store.set_password(session, user, hash_password(password))
    return {"user": user_json(user)} | ({"password": password} if generated else {})


routes = [
    Route(f"{PREFIX}/users", list_users, methods=["GET"]),
    Route(f"{PREFIX}/users", add_user, methods=["POST"]),
    Route(f"{PREFIX}/users/{{name}}", show_user, methods=["GET"]),
    Route(f"{PREFIX}/users/{{name}}/role", set_role, methods=["POST"]),
    Route(f"{PREFIX}/users/{{name}}/disable", disable_user, methods=["POST"]),
    Route(f"{PREFIX}/users/{{name}}/enable", enable_user, methods=["POST"]),
    Route(f"{PREFIX}/users/{{name}}/password", set_password, methods=["POST"]),
]
