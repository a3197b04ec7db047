"""The schema comes only from Alembic: the migrated database matches the models exactly,
and migrations keep the data they reshape."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from storage.base import metadata
from storage.engine import make_engine
from storage.migrate import alembic_config, current_revision, head_revision, upgrade
from storage.models import FindingOccurrence, FindingRecordRow
from storage.partitions import DAY, OPEN, OTHER, compared, day_name, day_of
from tests.conftest import PG_ADMIN_URL


def test_models_and_migrations_do_not_drift(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": compared}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store with no schema at all, to migrate step by step."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fleet.db'}"
        return
    request.getfixturevalue("pg_database")  # skips (or fails under CI) without PostgreSQL
    name = f"fleetctl_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def old_document(pid: int, start_time: int, fifo: str) -> dict[str, Any]:
    """A finding's document as migration 0009's store kept it (the last sighting's)."""
    return {
        "id": "f1",
        "key": "dash|0|bash|sshd|fifo",
        "pid": pid,
        "severity": "high",
        "score": 70,
        "reasons": [{"code": "feed_fifo", "points": 30, "text": "stdio is a FIFO"}],
        "evidence": {
            "lineage": [{"pid": pid, "start_time": start_time, "basename": "dash"}],
            "channels": [{"fd": 0, "kind": "fifo", "target": fifo, "partners": []}],
        },
        "prevalence": {"hosts_with_key": 1, "hosts_total": 1, "rarity": 0.0},
    }


def test_migration_turns_each_finding_into_one_occurrence(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0009")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO hosts (id, uuid, host_identifier, hostname, platform,"
                    " platform_type, os_name, os_version, osquery_version, node_key_hash,"
                    " host_details, enrolled_at, last_enrolled_at, last_seen, enroll_count)"
                    " VALUES (1, 'u1', 'web-1', 'web-1', 'ubuntu', '9', '', '', '5.8',"
                    " 'k1', '{}', 1000, 1000, 1000, 1)"
                )
            )
            insert = text(
                "INSERT INTO findings (id, host_id, path_key, pid, parent, child, severity,"
                " score, status, new_on_host, new_on_fleet, first_seen, last_seen, document,"
                " note) VALUES (:id, 1, 'dash|0|bash|sshd|fifo', :pid, 'bash', 'dash',"
                " 'high', 70, :status, true, true, 1000, :last, :doc, :note)"
            )
            for fid, pid, status, last, fifo in (
                ("f1", 4242, "open", 2000, "/dev/shm/.c"),
                ("f2", 4343, "acked", 3000, "/tmp/f"),
            ):
                conn.execute(
                    insert,
                    {
                        "id": fid,
                        "pid": pid,
                        "status": status,
                        "last": last,
                        "doc": json.dumps(old_document(pid, 777, fifo)),
                        "note": "checked" if status == "acked" else "",
                    },
                )
        upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                select(FindingOccurrence).order_by(FindingOccurrence.finding_id)
            ).all()
            findings = conn.execute(
                select(
                    FindingRecordRow.id, FindingRecordRow.status, FindingRecordRow.note
                ).order_by(FindingRecordRow.id)
            ).all()
        assert [
            (r.finding_id, r.pid, r.start_time, r.severity, r.score, r.first_seen, r.last_seen)
            for r in rows
        ] == [
            ("f1", 4242, 777, "high", 70, 1000, 2000),
            ("f2", 4343, 777, "high", 70, 1000, 3000),
        ]
        assert [r.acked_at for r in rows] == [None, 3000]  # covered by the earlier ack
        assert rows[0].document == old_document(4242, 777, "/dev/shm/.c")
        assert [tuple(f) for f in findings] == [("f1", "open", ""), ("f2", "acked", "checked")]
        with engine.connect() as conn:
            seen = conn.execute(text("SELECT id, pid FROM hunt_finding_occurrences")).all()
        assert sorted(tuple(r) for r in seen) == [(rows[0].id, 4242), (rows[1].id, 4343)]

        # Down again: each finding gets its (newest) occurrence's document back.
        command.downgrade(alembic_config(empty_url), "0009")
        with engine.connect() as conn:
            docs = dict(conn.execute(text("SELECT id, document FROM findings")).all())
        restored = {k: v if isinstance(v, dict) else json.loads(v) for k, v in docs.items()}
        assert restored["f2"] == old_document(4343, 777, "/tmp/f")
    finally:
        engine.dispose()


def test_a_uuid_may_be_shared_and_the_rows_of_every_host_survive(empty_url: str) -> None:
    """0012 rebuilds ``hosts`` on SQLite: rows that reference a host must not go with the
    old table, and the views must work after it."""
    engine = make_engine(empty_url)
    insert_host = text(
        "INSERT INTO hosts (id, uuid, host_identifier, hostname, platform,"
        " platform_type, os_name, os_version, osquery_version, node_key_hash,"
        " host_details, enrolled_at, last_enrolled_at, last_seen, enroll_count)"
        " VALUES (:id, 'u1', :ident, :ident, 'ubuntu', '9', '', '', '5.8',"
        " :key, :details, 1000, 1000, 1000, 1)"
    )
    details = {"osquery_info": {"instance_id": "i-1"}, "system_info": {"uuid": "u1"}}
    try:
        upgrade(engine, "0011")
        with engine.begin() as conn:
            conn.execute(
                insert_host,
                {"id": 1, "ident": "web-1", "key": "k1", "details": json.dumps(details)},
            )
            conn.execute(
                text(
                    "INSERT INTO status_logs (host_id, unix_time, severity, filename, line,"
                    " message, version) VALUES (1, 1000, 0, 'x.cpp', 1, 'kept', '5.8')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO findings (id, host_id, path_key, pid, parent, child, severity,"
                    " score, status, new_on_host, new_on_fleet, seen_during_learning,"
                    " first_seen, last_seen, note) VALUES ('f1', 1, 'k', 1, 'bash', 'sh',"
                    " 'high', 70, 'open', true, true, false, 1000, 1000, '')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO finding_occurrences (finding_id, pid, severity, score,"
                    " seen_during_learning, first_seen, last_seen, document)"
                    " VALUES ('f1', 1, 'high', 70, false, 1000, 1000, '{}')"
                )
            )
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT instance_id FROM hosts")).scalar() == "i-1"
            assert conn.execute(text("SELECT message FROM status_logs")).scalar() == "kept"
            assert conn.execute(text("SELECT count(*) FROM finding_occurrences")).scalar() == 1
            assert conn.execute(text("SELECT host FROM hunt_findings")).scalar() == "web-1"
            conn.execute(insert_host, {"id": 2, "ident": "web-2", "key": "k2", "details": "{}"})
        with pytest.raises(RuntimeError, match="several hosts have uuid 'u1'"):
            command.downgrade(alembic_config(empty_url), "0011")
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM hosts WHERE id = 2"))
        command.downgrade(alembic_config(empty_url), "0011")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT message FROM status_logs")).scalar() == "kept"
            assert conn.execute(text("SELECT count(*) FROM finding_occurrences")).scalar() == 1
    finally:
        engine.dispose()


def test_result_history_keeps_its_rows_and_ids_across_partitioning(empty_url: str) -> None:
    """0014 moves ``result_rows`` into day partitions on PostgreSQL (an index on SQLite):
    every row keeps its id and times, new ids follow the old ones, and down again the
    table is one table with its primary key."""
    engine = make_engine(empty_url)
    yesterday = day_of(int(time.time())) - DAY + 60
    rows = [  # (first_seen, removed_at): open, closed yesterday, closed in 1970, a tombstone
        (1000, None),
        (1000, yesterday),
        (1000, 2000),
        (None, yesterday + 5),
    ]
    insert = text(
        "INSERT INTO result_rows (host_id, name, row_hash, columns, copies, first_seen,"
        " removed_at, seen_at) VALUES (1, 'q', :h, '{}', 1, :first,"
        " :removed, 1000)"
    )
    read = text("SELECT id, first_seen, removed_at FROM result_rows ORDER BY id")
    try:
        upgrade(engine, "0013")
        with engine.begin() as conn:
            for k, (first, removed) in enumerate(rows):
                conn.execute(insert, {"h": f"h{k}", "first": first, "removed": removed})
            before = conn.execute(read).all()
        upgrade(engine)
        with engine.begin() as conn:
            assert conn.execute(read).all() == before
            conn.execute(insert, {"h": "new", "first": 3000, "removed": None})
            assert conn.execute(read).all()[-1][0] > before[-1][0]
            if conn.dialect.name == "postgresql":
                where = dict(
                    conn.execute(
                        text("SELECT row_hash, tableoid::regclass::text FROM result_rows")
                    ).all()
                )
                assert where == {
                    "h0": OPEN,
                    "h1": day_name(day_of(yesterday)),
                    "h2": OTHER,
                    "h3": day_name(day_of(yesterday)),
                    "new": OPEN,
                }
        command.downgrade(alembic_config(empty_url), "0013")
        with engine.begin() as conn:
            assert [tuple(r) for r in conn.execute(read).all()[:-1]] == before
            with pytest.raises(IntegrityError):  # the primary key is back
                conn.execute(text("INSERT INTO result_rows SELECT * FROM result_rows LIMIT 1"))
    finally:
        engine.dispose()


def test_existing_tokens_become_the_first_admins_and_secrets_get_names(empty_url: str) -> None:
    """0019: the tokens a store had keep working as tokens of a new ``admin`` user (no
    password yet: the server sets one on start); its enroll secrets are named."""
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0018")
        with engine.begin() as conn:
            for name, digest in [("fleetctl-cli", "a" * 64), ("ci", "b" * 64)]:
                conn.execute(
                    text(
                        "INSERT INTO api_tokens (name, token_hash, created_at) VALUES (:n, :d, 1)"
                    ),
                    {"n": name, "d": digest},
                )
            for digest in ("c" * 64, "d" * 64):
                conn.execute(
                    text("INSERT INTO enroll_secrets (secret_hash, created_at) VALUES (:d, 1)"),
                    {"d": digest},
                )
        upgrade(engine)
        with engine.connect() as conn:
            users = conn.execute(text("SELECT id, name, role, password_hash FROM users")).all()
            assert [tuple(u)[1:] for u in users] == [("admin", "admin", "")]
            tokens = conn.execute(
                text(
                    "SELECT name, user_id, role, expires_at, revoked_at FROM api_tokens ORDER BY id"
                )
            ).all()
            assert [tuple(t) for t in tokens] == [
                ("fleetctl-cli", users[0][0], "admin", None, None),
                ("ci", users[0][0], "admin", None, None),
            ]
            secrets = conn.execute(
                text("SELECT id, name, label_id, revoked_at FROM enroll_secrets ORDER BY id")
            ).all()
            assert [tuple(s)[1:] for s in secrets] == [
                ("default", None, None),
                (f"secret-{secrets[1][0]}", None, None),
            ]
        with pytest.raises(IntegrityError), engine.begin() as conn:  # a token has a user
            conn.execute(
                text(
                    "INSERT INTO api_tokens (user_id, name, role, token_hash, created_at)"
                    " VALUES (999, 'x', 'admin', :d, 1)"
                ),
                {"d": "e" * 64},
            )
        command.downgrade(alembic_config(empty_url), "0018")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM api_tokens")).scalar() == 2
    finally:
        engine.dispose()
