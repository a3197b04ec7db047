"""Users and tokens in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from storage import users
from storage.engine import make_engine, make_sessionmaker, session_scope


def test_a_token_use_is_written_and_never_moved_back(db_url: str) -> None:
    """Server processes flush their buffered uses independently: one holding an older
    use may flush after one holding a newer."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as session:
        tess = users.add_user(session, "tess", "observer", "-", 100)
        users.add_token(session, tess, "used", "observer", "a" * 64, 100, None)
        users.add_token(session, tess, "idle", "observer", "b" * 64, 100, None)
    with session_scope(sessions) as session:
        ids = {t.name: t.id for t in users.tokens(session)}
        users.touch_tokens(session, {ids["used"]: 300})
    with session_scope(sessions) as session:
        users.touch_tokens(session, {ids["used"]: 200})
    with session_scope(sessions) as session:
        last = {t.name: t.last_used_at for t in users.tokens(session)}
    assert last == {"used": 300, "idle": None}
    engine.dispose()
