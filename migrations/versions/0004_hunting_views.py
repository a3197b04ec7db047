"""hunting views over the temporal store (storage.views VERSION 1)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 05:45:00
"""

from collections.abc import Sequence

from alembic import op

from storage import views

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in views.create_statements(op.get_bind().dialect.name, version=1):
        op.execute(statement)


def downgrade() -> None:
    for statement in views.drop_statements(version=1):
        op.execute(statement)
