"""host identity: one hardware UUID may belong to several hosts; osquery's instance id

Cloned machines share ``system_info.uuid``. With ``hosts.uuid`` unique, the clones were
one host whose identifier and node key flipped at every enrollment. The UUID stops being
unique (an index instead), and hosts gain ``instance_id`` (``osquery_info.instance_id``,
filled from the details each host enrolled with) for ``serve --host-identity instance``.

SQLite cannot drop a unique constraint in place: the table is rebuilt. Dropping the old
table would cascade to every row that references a host (the migration runs in one
transaction, where foreign keys cannot be switched off), so those rows are copied aside
first and put back afterwards; the hunting views, which name ``hosts``, are dropped and
made again around the rebuild.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 08:00:00
"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from storage import views

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS_VERSION = 5


def _dependents(bind: Any) -> list[str]:
    """SQLite tables whose rows a deleted host takes with it (through any chain of
    foreign keys), parents before children."""
    tables = [
        name
        for (name,) in bind.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    parents = {
        t: {row[2] for row in bind.exec_driver_sql(f'PRAGMA foreign_key_list("{t}")')}
        for t in tables
    }
    depth = {"hosts": 0}
    changed = True
    while changed:
        changed = False
        for table, refs in parents.items():
            known = [depth[r] for r in refs if r in depth and r != table]
            if known and table != "hosts" and depth.get(table, -1) < max(known) + 1:
                depth[table] = max(known) + 1
                changed = True
    return sorted((t for t in depth if t != "hosts"), key=lambda t: (depth[t], t))


def _rebuild_hosts(change: Callable[[Any], None]) -> None:
    """Apply ``change`` to a batch of ``hosts``; on SQLite keep every dependent row."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        with op.batch_alter_table("hosts") as batch:
            change(batch)
        return
    for statement in views.drop_statements(version=VIEWS_VERSION):
        op.execute(statement)
    kept = _dependents(bind)
    for table in kept:
        bind.exec_driver_sql(f'CREATE TEMP TABLE "keep_{table}" AS SELECT * FROM "{table}"')
    with op.batch_alter_table("hosts", recreate="always") as batch:
        change(batch)
    for table in kept:
        bind.exec_driver_sql(f'DELETE FROM "{table}"')  # what the cascade left, if anything
        bind.exec_driver_sql(f'INSERT INTO "{table}" SELECT * FROM temp."keep_{table}"')
        bind.exec_driver_sql(f'DROP TABLE temp."keep_{table}"')
    for statement in views.create_statements("sqlite", version=VIEWS_VERSION):
        op.execute(statement)


def _instance_id(details: Any) -> str:
    info = details.get("osquery_info") if isinstance(details, dict) else None
    value = info.get("instance_id") if isinstance(info, dict) else None
    return value[:128] if isinstance(value, str) else ""


def upgrade() -> None:
    def change(batch: Any) -> None:
        batch.add_column(
            sa.Column("instance_id", sa.String(length=128), nullable=False, server_default="")
        )
        batch.drop_constraint("uq_hosts_uuid", type_="unique")
        batch.create_index("ix_hosts_uuid", ["uuid"], unique=False)
        batch.create_index("ix_hosts_instance_id", ["instance_id"], unique=False)

    _rebuild_hosts(change)
    hosts = sa.table(
        "hosts",
        sa.column("id", sa.BigInteger()),
        sa.column("host_details", sa.JSON()),
        sa.column("instance_id", sa.String()),
    )
    bind = op.get_bind()
    for host_id, details in bind.execute(sa.select(hosts.c.id, hosts.c.host_details)).all():
        instance = _instance_id(details)
        if instance:
            bind.execute(sa.update(hosts).where(hosts.c.id == host_id).values(instance_id=instance))


def downgrade() -> None:
    bind = op.get_bind()
    shared = bind.execute(
        sa.text("SELECT uuid FROM hosts GROUP BY uuid HAVING count(*) > 1 LIMIT 1")
    ).scalar()
    if shared is not None:
        raise RuntimeError(
            f"several hosts have uuid {shared!r}, which this older schema cannot hold: "
            "delete all but one of them first (fleetctl hosts delete)"
        )

    def change(batch: Any) -> None:
        batch.drop_index("ix_hosts_instance_id")
        batch.drop_index("ix_hosts_uuid")
        batch.create_unique_constraint("uq_hosts_uuid", ["uuid"])
        batch.drop_column("instance_id")

    _rebuild_hosts(change)
