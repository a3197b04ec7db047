"""finding occurrences and history: every incident on a path kept as first stored

A finding is a (host, path key); each process on that path, (pid, start time), is a row
of ``finding_occurrences`` with its own evidence, which is never rewritten. Until now a
finding row held one document that each sighting overwrote: it becomes the finding's
single occurrence (its start time read from the document's lineage), covered by the ack
if the finding was acked or suppressed (the time of that ack is unknown: the finding's
``last_seen`` stands for it), and ``findings.document`` goes. ``finding_history``
records each change of status or severity from now on. Findings gain who acked them and
when, and whether they were raised while their host was learning. ``hunt_findings``
shows the new columns and ``hunt_finding_occurrences`` the occurrences (storage.views
VERSION 4).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from storage import views

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
HANDLED = ("acked", "suppressed")

findings = sa.table(
    "findings",
    sa.column("id", sa.String),
    sa.column("pid", sa.BigInteger),
    sa.column("severity", sa.String),
    sa.column("score", sa.Integer),
    sa.column("status", sa.String),
    sa.column("first_seen", sa.BigInteger),
    sa.column("last_seen", sa.BigInteger),
    sa.column("document", JSONDOC),
)
occurrences = sa.table(
    "finding_occurrences",
    sa.column("id", BIGID),
    sa.column("finding_id", sa.String),
    sa.column("pid", sa.BigInteger),
    sa.column("start_time", sa.BigInteger),
    sa.column("severity", sa.String),
    sa.column("score", sa.Integer),
    sa.column("seen_during_learning", sa.Boolean),
    sa.column("first_seen", sa.BigInteger),
    sa.column("last_seen", sa.BigInteger),
    sa.column("acked_at", sa.BigInteger),
    sa.column("document", JSONDOC),
)


def _start_time(document: Any) -> int | None:
    """The child's start time as the old document's evidence recorded it."""
    lineage = (document or {}).get("evidence", {}).get("lineage") or []
    value = lineage[0].get("start_time") if lineage else None
    return value if isinstance(value, int) else None


def upgrade() -> None:
    for statement in views.drop_statements(version=4):
        op.execute(statement)
    bind = op.get_bind()
    # Read before the table changes: SQLite rebuilds it, and a cascade from the rebuild
    # must find no occurrence to delete yet.
    old = [dict(r._mapping) for r in bind.execute(sa.select(findings))]
    with op.batch_alter_table("findings") as batch:
        batch.add_column(
            sa.Column(
                "seen_during_learning", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch.add_column(sa.Column("acked_by", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("acked_at", sa.BigInteger(), nullable=True))
        batch.drop_column("document")
    op.create_table(
        "finding_occurrences",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("finding_id", sa.String(length=40), nullable=False),
        sa.Column("pid", sa.BigInteger(), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=True),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("seen_during_learning", sa.Boolean(), nullable=False),
        sa.Column("first_seen", sa.BigInteger(), nullable=False),
        sa.Column("last_seen", sa.BigInteger(), nullable=False),
        sa.Column("acked_at", sa.BigInteger(), nullable=True),
        sa.Column("document", JSONDOC, nullable=False),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["findings.id"],
            name=op.f("fk_finding_occurrences_finding_id_findings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_occurrences")),
    )
    op.create_index("ix_finding_occurrences_process", "finding_occurrences", ["finding_id", "pid"])
    op.create_index("ix_finding_occurrences_first_seen", "finding_occurrences", ["first_seen"])
    op.create_table(
        "finding_history",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("finding_id", sa.String(length=40), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("old", sa.String(length=16), nullable=True),
        sa.Column("new", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["finding_id"],
            ["findings.id"],
            name=op.f("fk_finding_history_finding_id_findings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finding_history")),
    )
    op.create_index("ix_finding_history_finding", "finding_history", ["finding_id"])
    if old:
        op.bulk_insert(
            occurrences,
            [
                {
                    "finding_id": f["id"],
                    "pid": f["pid"],
                    "start_time": _start_time(f["document"]),
                    "severity": f["severity"],
                    "score": f["score"],
                    "seen_during_learning": False,
                    "first_seen": f["first_seen"],
                    "last_seen": f["last_seen"],
                    "acked_at": f["last_seen"] if f["status"] in HANDLED else None,
                    "document": f["document"],
                }
                for f in old
            ],
        )
    for statement in views.create_statements(bind.dialect.name, version=4):
        op.execute(statement)


def downgrade() -> None:
    """Each finding keeps its newest occurrence's document; the other occurrences and
    the history are lost, and so are the reopened status (back to open) and the ack's
    author and time."""
    for statement in views.drop_statements(version=4):
        op.execute(statement)
    bind = op.get_bind()
    newest: dict[str, Any] = {}
    ordered = sa.select(occurrences.c.finding_id, occurrences.c.document).order_by(
        occurrences.c.first_seen, occurrences.c.id
    )
    for finding_id, document in bind.execute(ordered):
        newest[finding_id] = document
    op.drop_index("ix_finding_history_finding", table_name="finding_history")
    op.drop_table("finding_history")
    op.drop_index("ix_finding_occurrences_first_seen", table_name="finding_occurrences")
    op.drop_index("ix_finding_occurrences_process", table_name="finding_occurrences")
    op.drop_table("finding_occurrences")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("acked_at")
        batch.drop_column("acked_by")
        batch.drop_column("seen_during_learning")
        batch.add_column(sa.Column("document", JSONDOC, nullable=True))
    for finding_id, document in newest.items():
        bind.execute(findings.update().where(findings.c.id == finding_id).values(document=document))
    bind.execute(findings.update().where(findings.c.document.is_(None)).values(document={}))
    bind.execute(findings.update().where(findings.c.status == "reopened").values(status="open"))
    with op.batch_alter_table("findings") as batch:
        batch.alter_column("document", existing_type=JSONDOC, nullable=False)
    for statement in views.restore_statements(version=4):
        op.execute(statement)
