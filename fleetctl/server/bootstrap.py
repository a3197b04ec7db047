"""First-start setup of a server home: schema, TLS, enroll secret, admin token, flags.

Idempotent: a second start reuses what the first created, so osqueryd's pinned CA,
its enroll secret file and the CLI's context keep working across restarts.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from fleetctl.errors import FleetError
from fleetctl.packs.loader import load_file, pack_files, shipped_packs_dir
from fleetctl.server.auth import digest, new_secret
from fleetctl.server.passwords import hash_password, new_password
from fleetctl.server.tls import TLSFiles, ensure_self_signed
from fleetctl.settings import Settings
from storage import enroll_secrets
from storage import packs as pack_store
from storage import users as user_store
from storage.database import shown
from storage.engine import is_sqlite, make_engine, make_sessionmaker, session_scope
from storage.migrate import current_revision, head_revision, upgrade

FIRST_ADMIN = "admin"
CLI_TOKEN = "fleetctl-cli"  # the first admin's token in ``context.json``
ADMIN_PASSWORD_FILE = "admin_password"


@dataclass(frozen=True)
class Prepared:
    tls: TLSFiles
    enroll_secret_path: Path | None
    flags_path: Path
    context_path: Path
    server_url: str
    admin_password_path: Path | None = None  # written by this start: say so once


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def ensure_schema(db_url: str) -> None:
    """SQLite upgrades itself; a shared PostgreSQL must be upgraded on purpose."""
    engine = make_engine(db_url)
    try:
        if is_sqlite(db_url):
            upgrade(engine)
            return
        current, head = current_revision(engine), head_revision()
        if current != head:
            raise FleetError(
                f"database schema is at {current or 'nothing'}, code expects {head}: "
                f"run `fleetctl db upgrade --db {shown(db_url)}` first"
            )
    finally:
        engine.dispose()


def server_url(settings: Settings) -> str:
    host, port = settings.host_port
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"https://{shown}:{port}"


def prepare(settings: Settings) -> Prepared:
    home = settings.home
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    ensure_schema(settings.db_url)
    if settings.tls_cert and settings.tls_key:
        tls = TLSFiles(settings.tls_cert, settings.tls_key, settings.tls_cert)
    elif settings.tls_cert or settings.tls_key:
        raise FleetError("--tls-cert and --tls-key go together")
    else:
        tls = ensure_self_signed(settings.tls_dir, settings.host_port[0])
    engine = make_engine(settings.db_url)
    now = int(time.time())
    secret_path: Path | None = home / "enroll_secret"
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            for secret in settings.enroll_secrets:
                enroll_secrets.ensure_secret(session, digest(secret), now)
            if settings.enroll_secrets:
                _write_private(home / "enroll_secret", settings.enroll_secrets[0] + "\n")
            elif not enroll_secrets.any_stored(session):
                secret = new_secret()
                enroll_secrets.ensure_secret(session, digest(secret), now)
                _write_private(home / "enroll_secret", secret + "\n")
            elif not (home / "enroll_secret").exists():
                secret_path = None
            url = server_url(settings)
            password_path = ensure_first_admin(session, home, now)
            _ensure_context(session, settings, url, tls.ca, now)
    finally:
        engine.dispose()
    flags = osquery_flags(settings, tls.ca, secret_path)
    flags_path = home / "osquery.flags"
    flags_path.write_text(flags)
    return Prepared(tls, secret_path, flags_path, settings.context_path, url, password_path)


def ensure_first_admin(session: Session, home: Path, now: int) -> Path | None:
    """The first start makes the ``admin`` user (a store migrated from before users has
    one, holding the tokens it had, with no password yet): a password is generated and
    written to ``admin_password`` (0600) under the home, and said once (``prepare``'s
    ``admin_password_path``). The file's path when written now, else None."""
    admin = user_store.find_user(session, FIRST_ADMIN)
    if admin is None and user_store.list_users(session):
        return None  # the first admin was renamed or removed; other admins manage users
    password = new_password()
    if admin is None:
        user_store.add_user(session, FIRST_ADMIN, "admin", hash_password(password), now)
    elif not admin.password_hash:
        user_store.set_password(session, admin, hash_password(password))
    else:
        return None
    path = home / ADMIN_PASSWORD_FILE
    _write_private(path, password + "\n")
    return path


def _any_admin(session: Session) -> user_store.User:
    """An enabled admin to hold the context's token when ``admin`` is gone."""
    for user in user_store.list_users(session):
        if user.role == "admin" and not user.disabled:
            return user
    raise FleetError("no enabled admin user is left to hold the context's token")


def _ensure_context(session: Session, settings: Settings, url: str, ca: Path, now: int) -> None:
    """Keep a working admin token in the context file (a new one if the stored one is gone)."""
    path = settings.context_path
    context: dict[str, str] = {}
    if path.exists():
        try:
            context = json.loads(path.read_text())
        except ValueError:
            context = {}
    token = context.get("token", "")
    if not token or not user_store.has_live_token(session, digest(token)):
        token = new_secret()
        admin = user_store.find_user(session, FIRST_ADMIN) or _any_admin(session)
        taken = {t.name for t in user_store.tokens(session, admin) if t.revoked_at is None}
        # Another home on the same store (a replica's) keeps its own token working.
        name = CLI_TOKEN if CLI_TOKEN not in taken else f"{CLI_TOKEN}-{new_secret(4)}"
        user_store.add_token(session, admin, name, "admin", digest(token), now, None)
    # The learning window shapes what the admin API answers (a host learning or judging);
    # a client reading the store without this server answers with the same one.
    context.update(
        server=url,
        token=token,
        ca=str(ca),
        db=settings.db_url,
        learning_window=str(settings.learning_window),
    )
    _write_private(path, json.dumps(context, indent=2) + "\n")


def osquery_flags(settings: Settings, ca: Path, secret_path: Path | None) -> str:
    """The flags file osqueryd needs to use this server (``osqueryd --flagfile``)."""
    host, port = settings.host_port
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    p = "/api/v1/osquery"
    lines = [
        f"--tls_hostname={shown}:{port}",
        f"--tls_server_certs={ca}",
        f"--enroll_secret_path={secret_path or '<file holding your enroll secret>'}",
        f"--enroll_tls_endpoint={p}/enroll",
        "--config_plugin=tls",
        f"--config_tls_endpoint={p}/config",
        f"--config_refresh={settings.config_refresh}",
        "--logger_plugin=tls",
        f"--logger_tls_endpoint={p}/log",
        "--logger_tls_period=4",
        "--logger_tls_compress=true",
        "--disable_distributed=false",
        "--distributed_plugin=tls",
        f"--distributed_interval={settings.distributed_interval}",
        f"--distributed_tls_read_endpoint={p}/distributed/read",
        f"--distributed_tls_write_endpoint={p}/distributed/write",
        "--disable_carver=false",
        f"--carver_start_endpoint={p}/carve/begin",
        f"--carver_continue_endpoint={p}/carve/block",
        "--host_identifier=hostname",
    ]
    return "\n".join(lines) + "\n"


def apply_shipped_packs_to_a_new_store(settings: Settings) -> list[str]:
    """On a store that never held a pack, store the shipped packs (all hosts), so a new
    ``fleetctl serve`` collects IPC telemetry at once; the names applied ([] when the
    store already had packs, even if they were all deleted since)."""
    engine = make_engine(settings.db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            if pack_store.pack_names(session):
                return []
            now = int(time.time())
            packs = [p for f in pack_files([shipped_packs_dir()]) for p in load_file(f)]
            for pack in packs:
                pack_store.apply_pack(session, pack.name, pack.to_osquery(), (), now)
            return [p.name for p in packs]
    finally:
        engine.dispose()
