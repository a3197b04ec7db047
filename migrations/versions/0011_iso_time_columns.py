"""ISO 8601 twins of the hunting views' time columns, and unixepoch() on PostgreSQL

Every hunting view is created again with each unix-seconds column beside an ISO 8601
UTC text twin, ``<column>_iso`` (storage.views VERSION 5), so what ``fleetctl sql``
prints reads like the times every other command prints. PostgreSQL gains SQLite's
``unixepoch()`` so relative times ("the last week") are written the same on both
databases. The analyst role's grants are applied to the new views by ``db upgrade``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 07:00:00
"""

from collections.abc import Sequence

from alembic import op

from storage import views

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(views.UNIXEPOCH_FUNCTION)
    for statement in views.drop_statements(version=5):
        op.execute(statement)
    for statement in views.create_statements(dialect, version=5):
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in views.drop_statements(version=5):
        op.execute(statement)
    for statement in views.restore_statements(version=5, dialect=dialect):
        op.execute(statement)
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS unixepoch()")
