"""detection_jobs: replays of detection over stored history, run as server jobs

Revision ID: 0016
Revises: 0013
Create Date: 2026-12-06 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "detection_jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.Column("until", sa.BigInteger(), nullable=False),
        sa.Column("hosts", JSON, nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("worker", sa.String(length=255), nullable=False),
        sa.Column("hosts_total", sa.Integer(), nullable=False),
        sa.Column("hosts_done", sa.Integer(), nullable=False),
        sa.Column("times_total", sa.Integer(), nullable=False),
        sa.Column("times_done", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("new_findings", JSON, nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detection_jobs")),
    )
    op.create_index("ix_detection_jobs_created_at", "detection_jobs", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_detection_jobs_created_at", table_name="detection_jobs")
    op.drop_table("detection_jobs")
