"""result history partitioned by time on PostgreSQL; an index for windowed reads

On PostgreSQL ``result_rows`` becomes a table partitioned by ``removed_at`` (RANGE): the
rows present now in a DEFAULT partition, closed rows in one partition per UTC day under
a sub-partitioned ``result_rows_closed`` whose own DEFAULT takes closed rows of days
without one. ``storage.partitions`` says why that key and shape (``db prune`` drops whole
days, the as-of predicate prunes to the days after the time asked, adding a day never
scans the open rows) and keeps the days made as time goes on.

The rows are copied into the new table: days with closed rows in the last
``LOOKBACK_DAYS`` get their partitions first, older and odd times go to
``result_rows_closed_other``; indexes are built after the copy; ids keep their sequence.
Rows of a partitioned table cannot have a primary key on ``id`` alone (it must include
the nullable ``removed_at``), so each partition gets a unique index on ``id``. The
hunting views name the table and are made again around the swap (``db upgrade`` grants
them to the analyst role).

Both databases gain ``ix_result_rows_window`` (host_id, name, removed_at): reads of a
host's rows present in a window (triage, ``results --at``) range over the rows closed
after the window's start (and on SQLite the open ones) instead of all the host's history
of the query. On PostgreSQL it holds closed rows only: the open rows come from
``ix_result_rows_open``, and ingest's lookup by row hash in the open partition never
weighs it against ``ix_result_rows_lookup`` (with stale statistics it did, and read a
host's every row per hash).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 11:30:00
"""

import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import op

from storage import partitions, views

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS_VERSION = 5
OLD = "result_rows_unpartitioned"
COLUMNS = "id, host_id, name, row_hash, columns, copies, first_seen, removed_at, seen_at"


def _indexes(window: bool = True) -> None:
    """The indexes of ``result_rows`` (as the model declares them, or without the window
    index as 0013 had them); on a partitioned table each is made on every partition."""
    op.create_index("ix_result_rows_lookup", "result_rows", ["host_id", "name", "row_hash"])
    op.create_index(
        "ix_result_rows_open",
        "result_rows",
        ["host_id", "name"],
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.create_index("ix_result_rows_removed_at", "result_rows", ["removed_at"])
    if window:
        _window_index()


def _window_index() -> None:
    op.create_index(
        "ix_result_rows_window",
        "result_rows",
        ["host_id", "name", "removed_at"],
        postgresql_where=sa.text("removed_at IS NOT NULL"),
    )


def _drop_indexes(names: Sequence[str]) -> None:
    for name in names:
        op.execute(f"DROP INDEX IF EXISTS {name}")


def _swap_views(change: Callable[[], None]) -> None:
    """Run ``change`` with the hunting views (which name ``result_rows``) dropped."""
    for statement in views.drop_statements(version=VIEWS_VERSION):
        op.execute(statement)
    change()
    for statement in views.create_statements("postgresql", version=VIEWS_VERSION):
        op.execute(statement)


def _partition() -> None:
    bind = op.get_bind()
    op.execute("ALTER SEQUENCE result_rows_id_seq OWNED BY NONE")
    op.execute(f"ALTER TABLE result_rows RENAME TO {OLD}")
    _drop_indexes(("ix_result_rows_lookup", "ix_result_rows_open", "ix_result_rows_removed_at"))
    partitions.create_layout(bind)
    today = partitions.day_of(int(time.time()))
    days = bind.execute(
        sa.text(
            f"SELECT DISTINCT removed_at - removed_at % {partitions.DAY} FROM {OLD}"
            " WHERE removed_at >= :lo AND removed_at < :hi"
        ),
        {
            "lo": today - partitions.LOOKBACK_DAYS * partitions.DAY,
            "hi": today + (partitions.AHEAD_DAYS + 1) * partitions.DAY,
        },
    ).scalars()
    for day in sorted(days):
        partitions.add_day(bind, day)
    op.execute(f"INSERT INTO result_rows ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}")
    partitions.ensure_days(bind)
    op.execute(f"DROP TABLE {OLD}")
    _indexes()
    op.execute("ALTER SEQUENCE result_rows_id_seq OWNED BY result_rows.id")
    op.execute("ANALYZE result_rows")


def _unpartition() -> None:
    op.execute("ALTER SEQUENCE result_rows_id_seq OWNED BY NONE")
    op.execute(f"ALTER TABLE result_rows RENAME TO {OLD}")
    _drop_indexes(
        (
            "ix_result_rows_lookup",
            "ix_result_rows_open",
            "ix_result_rows_removed_at",
            "ix_result_rows_window",
        )
    )
    op.execute(
        """CREATE TABLE result_rows (
            id BIGINT NOT NULL DEFAULT nextval('result_rows_id_seq'),
            host_id BIGINT NOT NULL,
            name VARCHAR(512) NOT NULL,
            row_hash VARCHAR(32) NOT NULL,
            columns JSONB NOT NULL,
            copies INTEGER NOT NULL,
            first_seen BIGINT,
            removed_at BIGINT,
            seen_at BIGINT NOT NULL,
            CONSTRAINT pk_result_rows PRIMARY KEY (id)
        )"""
    )
    op.execute(f"INSERT INTO result_rows ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}")
    op.execute(f"DROP TABLE {OLD}")  # with every partition
    _indexes(window=False)
    op.execute("ALTER SEQUENCE result_rows_id_seq OWNED BY result_rows.id")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _swap_views(_partition)
        return
    _window_index()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _swap_views(_unpartition)
        return
    op.drop_index("ix_result_rows_window", table_name="result_rows")
