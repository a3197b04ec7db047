"""drop distributed_results: the server stores answers only to what it handed out

Answers to campaign (live query and hunt) ids go to ``campaign_targets``, answers to
dynamic label queries to ``label_membership``; anything else is dropped and counted in
the host's status logs, so nothing writes ``distributed_results`` any more.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.drop_index("uq_distributed_results_host_query", table_name="distributed_results")
    op.drop_table("distributed_results")


def downgrade() -> None:
    op.create_table(
        "distributed_results",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("host_id", BIGID, nullable=False),
        sa.Column("query_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("rows", JSONDOC, nullable=False),
        sa.Column("stats", JSONDOC, nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_distributed_results_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distributed_results")),
    )
    op.create_index(
        "uq_distributed_results_host_query",
        "distributed_results",
        ["host_id", "query_id"],
        unique=True,
    )
