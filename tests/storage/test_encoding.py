"""The store's text: the NUL escape, verbatim JSON of quarantined lines, and which
database errors are the data's fault (on SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from storage.encoding import ESCAPE, escape, escape_row, stored_length, unescape, unescape_row
from storage.engine import make_engine
from storage.rejected import is_data_error, refusal, verbatim

PIECES = ["", "\0", ESCAPE, "0", "a", "é"]
TRICKY = ["".join(p) for n in range(4) for p in itertools.product(PIECES, repeat=n)]


@pytest.mark.parametrize("nul", [True, False])
def test_escape_is_reversible_and_never_collides(nul: bool) -> None:
    escaped = {s: escape(s, nul) for s in TRICKY}
    assert all(unescape(e) == s for s, e in escaped.items())
    assert len(set(escaped.values())) == len(set(TRICKY))
    assert all(stored_length(s) == len(escape(s, True)) for s in TRICKY)
    if nul:
        assert not any("\0" in e for e in escaped.values())
    else:
        assert escape("a\0b", nul) == "a\0b"  # SQLite keeps NUL as sent


def test_rows_without_anything_to_escape_are_not_copied() -> None:
    row = {"pid": "1", "cmdline": "sh"}
    assert escape_row(row, True) is row
    tricky = {"k\0": f"v{ESCAPE}", "pid": "1"}
    stored = escape_row(tricky, True)
    assert stored == {f"k{ESCAPE}0": f"v{ESCAPE}{ESCAPE}", "pid": "1"}
    assert unescape_row(stored) == tricky


def test_verbatim_is_ascii_json_at_any_depth() -> None:
    line = {"b": "nul \0 and \udc80 and é", "a": [1, 2.5, None, True, 2**70], "c": {}}
    kept = verbatim(line)
    assert kept.isascii()
    assert json.loads(kept) == line
    assert list(json.loads(verbatim(line, sort_keys=True))) == ["a", "b", "c"]
    deep: Any = "x"
    for _ in range(3000):
        deep = {"k": [deep]}
    assert verbatim(deep) == '{"k":[' * 3000 + '"x"' + "]}" * 3000


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    e = make_engine(db_url)
    yield e
    e.dispose()


def _error(engine: Engine, *statements: str, **params: Any) -> BaseException:
    """The error the last of ``statements`` raises, run in one transaction."""
    with pytest.raises(Exception) as caught, engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql), params if sql == statements[-1] else {})
    return caught.value


def _lock_timeout(engine: Engine) -> BaseException:
    """PostgreSQL's lock_not_available: another transaction holds the table."""
    with engine.begin() as holder:
        holder.execute(text("LOCK TABLE hosts IN ACCESS EXCLUSIVE MODE"))
        return _error(engine, "LOCK TABLE hosts IN ACCESS EXCLUSIVE MODE NOWAIT")


def test_data_errors_are_told_from_database_failures(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        refused = [
            _error(engine, "SELECT 1 / 0"),  # 22012
            _error(engine, "SELECT CAST(:v AS text)", v="a\0b"),  # psycopg refuses NUL
            _error(
                engine, "CREATE TEMP TABLE t (v varchar(3))", "INSERT INTO t VALUES ('abcd')"
            ),  # 22001
            _error(engine, "SELECT CAST('99999999999999999999' AS bigint)"),  # 22003
            _error(engine, "SELECT repeat('x', 1073741824)"),  # 54000
        ]
        failed = [
            _error(engine, "SET LOCAL statement_timeout = 1", "SELECT pg_sleep(1)"),  # 57014
            _lock_timeout(engine),  # 55P03
            _error(engine, "SELECT * FROM no_such_table"),  # 42P01
        ]
    else:
        refused = [
            _error(engine, "SELECT zeroblob(2000000000)"),  # SQLITE_TOOBIG
            _error(engine, "SELECT :v", v=2**64),  # sqlite3 cannot bind it
        ]
        failed = [
            _error(engine, "SELECT * FROM no_such_table"),
            _error(engine, "INSERT INTO hosts (id) VALUES (NULL)"),  # NOT NULL constraint
        ]
    assert [is_data_error(e) for e in refused] == [True] * len(refused), refused
    assert [is_data_error(e) for e in failed] == [False] * len(failed), failed
    assert refusal(refused[0]).startswith("the database refused it: ")
