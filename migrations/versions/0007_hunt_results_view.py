"""hunt_results and hunt_live_results: hunt and live-query rows as hunting views

(storage.views VERSION 2)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 07:40:00
"""

from collections.abc import Sequence

from alembic import op

from storage import views

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in views.create_statements(op.get_bind().dialect.name, version=2):
        op.execute(statement)


def downgrade() -> None:
    for statement in views.drop_statements(version=2):
        op.execute(statement)
