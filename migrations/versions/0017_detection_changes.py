"""detection changes: the row changes of batches stored by a process that does not judge
the host, for the judge to move the host forward from

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 15:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "detection_changes",
        sa.Column("host_id", BigID, nullable=False),
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("stored_at", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_detection_changes_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", "version", name=op.f("pk_detection_changes")),
    )
    op.create_index(
        op.f("ix_detection_changes_stored_at"), "detection_changes", ["stored_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_detection_changes_stored_at"), table_name="detection_changes")
    op.drop_table("detection_changes")
