"""validations: purple-team scenario outcomes per host, as coverage evidence

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 09:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "validations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("host_uuid", sa.String(length=128), nullable=False),
        sa.Column("host_identifier", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("scenario", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("result", sa.String(length=32), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("agent", sa.String(length=16), nullable=False),
        sa.Column("finding", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("ran_at", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_validations")),
    )
    op.create_index(
        "ix_validations_host",
        "validations",
        ["host_uuid", "host_identifier", "scenario", "ran_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_validations_host", table_name="validations")
    op.drop_table("validations")
