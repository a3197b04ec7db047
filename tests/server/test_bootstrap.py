"""A new store gets the shipped packs on the server's first start, once."""

from __future__ import annotations

from pathlib import Path

from fleetctl.packs.loader import load_file, pack_files, shipped_packs_dir
from fleetctl.server.bootstrap import apply_shipped_packs_to_a_new_store
from fleetctl.settings import Settings
from storage import packs as pack_store
from storage.engine import make_engine, make_sessionmaker, session_scope


def test_a_new_store_gets_the_shipped_packs_once(db_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, db=db_url)
    shipped = sorted(p.name for f in pack_files([shipped_packs_dir()]) for p in load_file(f))
    assert sorted(apply_shipped_packs_to_a_new_store(settings)) == shipped
    assert apply_shipped_packs_to_a_new_store(settings) == []  # a restart changes nothing
    engine = make_engine(db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            assert sorted(p.name for p in pack_store.current_packs(session)) == shipped
            for name in shipped:  # the admin removes every pack ...
                pack_store.delete_pack(session, name, 0)
    finally:
        engine.dispose()
    assert apply_shipped_packs_to_a_new_store(settings) == []  # ... and they stay removed
