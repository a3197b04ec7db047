"""Declarative base, naming convention and portable column types for the store.

Times are unix seconds in ``BigInteger`` columns: osquery reports ``unixTime`` that way,
they compare the same on SQLite and PostgreSQL, and PostgreSQL can range-partition
large tables on them. JSON columns are JSONB on PostgreSQL and JSON text on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from sqlalchemy import JSON, BigInteger, Integer, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a real bigint.
BigID = BigInteger().with_variant(Integer(), "sqlite")
JSONType = JSON().with_variant(JSONB(), "postgresql")

bigid_pk = Annotated[int, mapped_column(BigID, primary_key=True, autoincrement=True)]
unix_ts = Annotated[int, mapped_column(BigInteger)]
json_doc = Annotated[Any, mapped_column(JSONType)]

# Ids or keys per ``IN (...)`` list: far below SQLite's bound-parameter limit, and short
# enough statements for PostgreSQL's planner.
IN_CHUNK = 500
T = TypeVar("T")


def in_chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` in slices of ``size``, one ``IN`` list each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ids_by_time(
    times: Mapping[int, int], size: int = IN_CHUNK
) -> Iterator[tuple[int, Sequence[int]]]:
    """``id -> time`` as (time, ids) pairs, ``size`` ids at most each: a flush of
    last-seen times holds a few distinct seconds for thousands of ids, so each becomes
    an ``UPDATE ... WHERE id IN (...)`` per second rather than one parameter set per id."""
    by_time: dict[int, list[int]] = {}
    for key, ts in times.items():
        by_time.setdefault(ts, []).append(key)
    for ts, ids in by_time.items():
        for chunk in in_chunks(ids, size):
            yield ts, chunk


class Base(DeclarativeBase):
    """Base class of every model; its metadata is Alembic's target."""

    metadata = metadata
