"""Saved analyst queries: SQL kept under a name, shared by every admin of the store."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.models import SavedQuery

__all__ = ["SavedQuery", "delete_query", "list_queries", "save_query"]


def list_queries(session: Session) -> list[SavedQuery]:
    return list(session.scalars(select(SavedQuery).order_by(SavedQuery.name)))


def save_query(
    session: Session, name: str, sql: str, description: str, saved_by: str, now: int
) -> str:
    """Keep ``sql`` under ``name``; "created" or "updated" (a name saved again)."""
    found = session.get(SavedQuery, name)
    if found is None:
        session.add(
            SavedQuery(name=name, sql=sql, description=description, saved_by=saved_by, saved_at=now)
        )
        return "created"
    found.sql, found.description, found.saved_by, found.saved_at = sql, description, saved_by, now
    return "updated"


def delete_query(session: Session, name: str) -> bool:
    result = session.execute(delete(SavedQuery).where(SavedQuery.name == name))
    return bool(result.rowcount)  # type: ignore[attr-defined]
