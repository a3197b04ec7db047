"""initial store: hosts, temporal result rows, status logs, carves

Revision ID: 0001
Revises:
Create Date: 2026-11-28 04:12:13.054230
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "api_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_table(
        "enroll_secrets",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enroll_secrets")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_enroll_secrets_secret_hash")),
    )
    op.create_table(
        "hosts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("uuid", sa.String(length=128), nullable=False),
        sa.Column("host_identifier", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("platform_type", sa.String(length=16), nullable=False),
        sa.Column("os_name", sa.String(length=255), nullable=False),
        sa.Column("os_version", sa.String(length=255), nullable=False),
        sa.Column("osquery_version", sa.String(length=64), nullable=False),
        sa.Column("node_key_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "host_details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "decorations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("enrolled_at", sa.BigInteger(), nullable=False),
        sa.Column("last_enrolled_at", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("enroll_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("node_key_hash", name=op.f("uq_hosts_node_key_hash")),
        sa.UniqueConstraint("uuid", name=op.f("uq_hosts_uuid")),
    )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hosts_host_identifier"), ["host_identifier"], unique=False
        )

    op.create_table(
        "result_rows",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("row_hash", sa.String(length=32), nullable=False),
        sa.Column(
            "columns",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("copies", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=True),
        sa.Column("removed_at", sa.BigInteger(), nullable=True),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_rows")),
    )
    with op.batch_alter_table("result_rows", schema=None) as batch_op:
        batch_op.create_index(
            "ix_result_rows_lookup", ["host_id", "name", "row_hash"], unique=False
        )
        batch_op.create_index(
            "ix_result_rows_open",
            ["host_id", "name"],
            unique=False,
            postgresql_where=sa.text("removed_at IS NULL"),
            sqlite_where=sa.text("removed_at IS NULL"),
        )
        batch_op.create_index("ix_result_rows_removed_at", ["removed_at"], unique=False)

    op.create_table(
        "carves",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("carve_id", sa.String(length=255), nullable=False),
        sa.Column("request_id", sa.String(length=255), nullable=False),
        sa.Column("block_count", sa.Integer(), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("carve_size", sa.BigInteger(), nullable=False),
        sa.Column("blocks_received", sa.Integer(), nullable=False),
        sa.Column("compression", sa.String(length=16), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_carves_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carves")),
        sa.UniqueConstraint("session_id", name=op.f("uq_carves_session_id")),
    )
    op.create_table(
        "data_loss",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("first_missing", sa.BigInteger(), nullable=True),
        sa.Column("last_missing", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("unix_time", sa.BigInteger(), nullable=False),
        sa.Column("detected_at", sa.BigInteger(), nullable=False),
        sa.Column("resolved_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_data_loss_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_data_loss")),
    )
    with op.batch_alter_table("data_loss", schema=None) as batch_op:
        batch_op.create_index("ix_data_loss_host_name", ["host_id", "name"], unique=False)

    op.create_table(
        "deliveries",
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("log_type", sa.String(length=16), nullable=False),
        sa.Column("digests", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_deliveries_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("host_id", "log_type", name=op.f("pk_deliveries")),
    )
    op.create_table(
        "distributed_results",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("query_id", sa.String(length=255), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "rows",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "stats",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_distributed_results_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_distributed_results")),
    )
    with op.batch_alter_table("distributed_results", schema=None) as batch_op:
        batch_op.create_index(
            "uq_distributed_results_host_query", ["host_id", "query_id"], unique=True
        )

    op.create_table(
        "query_states",
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("pack", sa.String(length=255), nullable=True),
        sa.Column("query", sa.String(length=255), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("last_unix_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("zero_counter_diffs", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_id"],
            ["hosts.id"],
            name=op.f("fk_query_states_host_id_hosts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("host_id", "name", name=op.f("pk_query_states")),
    )
    op.create_table(
        "status_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("host_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("unix_time", sa.BigInteger(), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column(
            "decorations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_status_logs_host_id_hosts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_logs")),
    )
    with op.batch_alter_table("status_logs", schema=None) as batch_op:
        batch_op.create_index("ix_status_logs_host_time", ["host_id", "unix_time"], unique=False)

    op.create_table(
        "carve_blocks",
        sa.Column("carve_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("block_id", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["carve_id"],
            ["carves.id"],
            name=op.f("fk_carve_blocks_carve_id_carves"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("carve_id", "block_id", name=op.f("pk_carve_blocks")),
    )


def downgrade() -> None:

    op.drop_table("carve_blocks")
    with op.batch_alter_table("status_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_status_logs_host_time")

    op.drop_table("status_logs")
    op.drop_table("query_states")
    with op.batch_alter_table("distributed_results", schema=None) as batch_op:
        batch_op.drop_index("uq_distributed_results_host_query")

    op.drop_table("distributed_results")
    op.drop_table("deliveries")
    with op.batch_alter_table("data_loss", schema=None) as batch_op:
        batch_op.drop_index("ix_data_loss_host_name")

    op.drop_table("data_loss")
    op.drop_table("carves")
    with op.batch_alter_table("result_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_result_rows_removed_at")
        batch_op.drop_index(
            "ix_result_rows_open",
            postgresql_where=sa.text("removed_at IS NULL"),
            sqlite_where=sa.text("removed_at IS NULL"),
        )
        batch_op.drop_index("ix_result_rows_lookup")

    op.drop_table("result_rows")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hosts_host_identifier"))

    op.drop_table("hosts")
    op.drop_table("enroll_secrets")
    op.drop_table("api_tokens")
