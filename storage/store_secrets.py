"""Secrets every server process of one store shares, kept in ``store_secrets``.

Each is made once per store by whichever process asks first: the insert does nothing
when another process (a worker, a replica) made it meanwhile, and the stored value is
what everyone reads, so all processes agree on it.
"""

from __future__ import annotations

import secrets
import time

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import StoreSecret


def stored_secret(conn: Connection | Session, name: str) -> str | None:
    value: str | None = conn.scalar(select(StoreSecret.value).where(StoreSecret.name == name))
    return value


def ensure_secret(conn: Connection | Session, name: str) -> str:
    """The secret called ``name``, made (32 random bytes, URL-safe text) if missing."""
    bind = conn if isinstance(conn, Connection) else conn.get_bind()
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(StoreSecret)
        .values(name=name, value=secrets.token_urlsafe(32), created_at=int(time.time()))
        .on_conflict_do_nothing(index_elements=["name"])
    )
    value = stored_secret(conn, name)
    assert value is not None
    return value
