"""hardening: rejected log lines, carve byte accounting and expiry, store secrets

Lines the store cannot hold as sent are kept in ``rejected_lines`` (and the
``hunt_rejected`` view, storage.views VERSION 3) instead of blocking their host's
stream; carves count the bytes they stored and when their last block came, so a carve
cannot outgrow its declared size and a stalled one can be expired; ``store_secrets``
holds what every server of one store shares (the analyst role's password).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from storage import views

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rejected_lines",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("host_id", BIGID, nullable=False),
        sa.Column("log_type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_rejected_lines_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_lines")),
    )
    op.create_index(
        "ix_rejected_lines_host_time", "rejected_lines", ["host_id", "received_at"], unique=False
    )
    op.create_table(
        "store_secrets",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_store_secrets")),
    )
    with op.batch_alter_table("carves") as batch:
        batch.add_column(
            sa.Column("bytes_received", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("updated_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("expired_at", sa.BigInteger(), nullable=True))
    for statement in views.create_statements(op.get_bind().dialect.name, version=3):
        op.execute(statement)


def downgrade() -> None:
    for statement in views.drop_statements(version=3):
        op.execute(statement)
    with op.batch_alter_table("carves") as batch:
        batch.drop_column("expired_at")
        batch.drop_column("updated_at")
        batch.drop_column("bytes_received")
    op.drop_table("store_secrets")
    op.drop_index("ix_rejected_lines_host_time", table_name="rejected_lines")
    op.drop_table("rejected_lines")
