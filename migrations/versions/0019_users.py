"""users and roles; tokens belong to users, expire and are revoked; named enroll secrets

Existing admin tokens become tokens of a first ``admin`` user (no password until the
server sets one on start); existing enroll secrets are named ``default`` (the first)
and ``secret-<id>``.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 17:20:00
"""

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BigID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )
    _tokens_of_users()
    _named_secrets()


def _tokens_of_users() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("user_id", BigID, nullable=True))
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("last_used_at", sa.BigInteger(), nullable=True))
    if bind.execute(sa.text("SELECT count(*) FROM api_tokens")).scalar():
        bind.execute(
            sa.text(
                "INSERT INTO users (name, role, password_hash, disabled, created_at) "
                "VALUES ('admin', 'admin', '', false, :now)"
            ),
            {"now": int(time.time())},
        )
        admin = bind.execute(sa.text("SELECT id FROM users WHERE name = 'admin'")).scalar()
        bind.execute(
            sa.text("UPDATE api_tokens SET user_id = :admin, role = 'admin'"), {"admin": admin}
        )
    with op.batch_alter_table("api_tokens") as batch:
        batch.alter_column("user_id", existing_type=BigID, nullable=False)
        batch.alter_column("role", existing_type=sa.String(length=16), nullable=False)
        batch.create_foreign_key(
            op.f("fk_api_tokens_user_id_users"), "users", ["user_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index(op.f("ix_api_tokens_user_id"), ["user_id"], unique=False)


def _named_secrets() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("enroll_secrets") as batch:
        batch.add_column(sa.Column("name", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("label_id", BigID, nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.BigInteger(), nullable=True))
    ids = [row[0] for row in bind.execute(sa.text("SELECT id FROM enroll_secrets ORDER BY id"))]
    for n, secret_id in enumerate(ids):
        bind.execute(
            sa.text("UPDATE enroll_secrets SET name = :name WHERE id = :id"),
            {"name": "default" if n == 0 else f"secret-{secret_id}", "id": secret_id},
        )
    with op.batch_alter_table("enroll_secrets") as batch:
        batch.alter_column("name", existing_type=sa.String(length=128), nullable=False)
        batch.create_unique_constraint(op.f("uq_enroll_secrets_name"), ["name"])
        batch.create_foreign_key(
            op.f("fk_enroll_secrets_label_id_labels"),
            "labels",
            ["label_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("enroll_secrets") as batch:
        batch.drop_constraint(op.f("fk_enroll_secrets_label_id_labels"), type_="foreignkey")
        batch.drop_constraint(op.f("uq_enroll_secrets_name"), type_="unique")
        batch.drop_column("revoked_at")
        batch.drop_column("label_id")
        batch.drop_column("name")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index(op.f("ix_api_tokens_user_id"))
        batch.drop_constraint(op.f("fk_api_tokens_user_id_users"), type_="foreignkey")
        batch.drop_column("last_used_at")
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
        batch.drop_column("role")
        batch.drop_column("user_id")
    op.drop_table("users")
