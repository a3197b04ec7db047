"""detection: path sightings, parent history, findings, baselines

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 04:51:32.526725
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "baselines",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_baselines")),
    )
    op.create_table(
        "detection_hosts",
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("baselined_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_detection_hosts_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", name=op.f("pk_detection_hosts")),
    )
    op.create_table(
        "findings",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("path_key", sa.String(length=512), nullable=False),
        sa.Column("pid", sa.BigInteger(), nullable=False),
        sa.Column("parent", sa.String(length=255), nullable=False),
        sa.Column("child", sa.String(length=255), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("new_on_host", sa.Boolean(), nullable=False),
        sa.Column("new_on_fleet", sa.Boolean(), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column(
            "document",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_findings_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.create_index("ix_findings_host", ["host_id"], unique=False)
        batch_op.create_index("ix_findings_last_seen", ["last_seen"], unique=False)

    op.create_table(
        "parent_children",
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("parent", sa.String(length=255), nullable=False),
        sa.Column("child", sa.String(length=255), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_parent_children_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", "parent", "child", name=op.f("pk_parent_children")),
    )
    with op.batch_alter_table("parent_children", schema=None) as batch_op:
        batch_op.create_index("ix_parent_children_parent", ["parent"], unique=False)

    op.create_table(
        "path_sightings",
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("path_key", sa.String(length=512), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_path_sightings_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", "path_key", name=op.f("pk_path_sightings")),
    )
    with op.batch_alter_table("path_sightings", schema=None) as batch_op:
        batch_op.create_index("ix_path_sightings_key", ["path_key"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("path_sightings", schema=None) as batch_op:
        batch_op.drop_index("ix_path_sightings_key")

    op.drop_table("path_sightings")
    with op.batch_alter_table("parent_children", schema=None) as batch_op:
        batch_op.drop_index("ix_parent_children_parent")

    op.drop_table("parent_children")
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index("ix_findings_last_seen")
        batch_op.drop_index("ix_findings_host")

    op.drop_table("findings")
    op.drop_table("detection_hosts")
    op.drop_table("baselines")
