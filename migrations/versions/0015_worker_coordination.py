"""worker coordination: change events, pending detection marks, detection worker status

Revision ID: 0015
Revises: 0013
Create Date: 2026-12-06 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fleet_events",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("host_id", sa.BigInteger(), nullable=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fleet_events")),
    )
    op.create_index(op.f("ix_fleet_events_at"), "fleet_events", ["at"], unique=False)
    op.create_table(
        "detection_marks",
        sa.Column("host_id", BigID, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("judged", sa.BigInteger(), nullable=False),
        sa.Column("rebuild", sa.Boolean(), nullable=False),
        sa.Column("marked_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_detection_marks_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_detection_marks")),
    )
    op.create_table(
        "detection_workers",
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("worker", name=op.f("pk_detection_workers")),
    )


def downgrade() -> None:
    op.drop_table("detection_workers")
    op.drop_table("detection_marks")
    op.drop_index(op.f("ix_fleet_events_at"), table_name="fleet_events")
    op.drop_table("fleet_events")
