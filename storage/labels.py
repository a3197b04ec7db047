"""Labels and their membership (session passed in)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from storage.base import in_chunks
from storage.models import Host, Label, LabelMembership


@dataclass(frozen=True)
class DynamicLabel:
    id: int
    name: str
    query: str
    platform: str | None
    updated_at: int


def upsert_label(
    session: Session,
    name: str,
    *,
    query: str | None,
    platform: str | None,
    description: str,
    host_ids: Iterable[int] | None,
    now: int,
) -> str:
    """Create or replace a label. A manual label's members are set here; a dynamic
    label's membership is cleared and re-evaluated by the hosts."""
    label = session.scalars(select(Label).where(Label.name == name)).first()
    action = "updated" if label is not None else "created"
    if label is None:
        label = Label(name=name, updated_at=now)
        session.add(label)
    elif (label.query, label.platform, label.description) == (query, platform, description) and (
        query is not None
    ):
        return "unchanged"
    label.query, label.platform, label.description, label.updated_at = (
        query,
        platform,
        description,
        now,
    )
    session.flush()
    session.execute(delete(LabelMembership).where(LabelMembership.label_id == label.id))
    for host_id in sorted(set(host_ids or ())):
        session.add(
            LabelMembership(label_id=label.id, host_id=host_id, member=True, evaluated_at=now)
        )
    return action


def list_labels(session: Session) -> list[tuple[Label, int]]:
    members = (
        select(LabelMembership.label_id, func.count().label("n"))
        .where(LabelMembership.member.is_(True))
        .group_by(LabelMembership.label_id)
        .subquery()
    )
    rows = session.execute(
        select(Label, func.coalesce(members.c.n, 0))
        .outerjoin(members, members.c.label_id == Label.id)
        .order_by(Label.name)
    )
    return [(label, int(n)) for label, n in rows]


def get_label(session: Session, name: str) -> Label | None:
    return session.scalars(select(Label).where(Label.name == name)).first()


def members(session: Session, label_id: int) -> list[tuple[Host, int]]:
    rows = session.execute(
        select(Host, LabelMembership.evaluated_at)
        .join(LabelMembership, LabelMembership.host_id == Host.id)
        .where(LabelMembership.label_id == label_id, LabelMembership.member.is_(True))
        .order_by(Host.id)
    )
    return [(host, evaluated) for host, evaluated in rows]


def member_ids(session: Session, label_id: int) -> list[int]:
    return list(
        session.scalars(
            select(LabelMembership.host_id).where(
                LabelMembership.label_id == label_id, LabelMembership.member.is_(True)
            )
        )
    )


def host_label_names(session: Session, host_id: int) -> set[str]:
    return set(
        session.scalars(
            select(Label.name)
            .join(LabelMembership, LabelMembership.label_id == Label.id)
            .where(LabelMembership.host_id == host_id, LabelMembership.member.is_(True))
        )
    )


def all_memberships(session: Session) -> dict[int, set[str]]:
    """host id -> names of the labels it is in (for diffs over the whole fleet)."""
    out: dict[int, set[str]] = {}
    rows = session.execute(
        select(LabelMembership.host_id, Label.name)
        .join(Label, Label.id == LabelMembership.label_id)
        .where(LabelMembership.member.is_(True))
    )
    for host_id, name in rows:
        out.setdefault(host_id, set()).add(name)
    return out


def _dynamic(label: Label) -> DynamicLabel:
    return DynamicLabel(label.id, label.name, label.query or "", label.platform, label.updated_at)


def dynamic_labels(session: Session) -> list[DynamicLabel]:
    return [
        _dynamic(label) for label in session.scalars(select(Label).where(Label.query.is_not(None)))
    ]


def evaluations(session: Session) -> dict[tuple[int, int], int]:
    """(host id, label id) -> when the host last answered that label's query."""
    rows = session.execute(
        select(LabelMembership.host_id, LabelMembership.label_id, LabelMembership.evaluated_at)
    )
    return {(h, label): t for h, label, t in rows}


def dynamic_labels_for(
    session: Session, host_id: int, label_ids: list[int]
) -> list[tuple[DynamicLabel, int | None]]:
    """The dynamic labels among ``label_ids``, each with when this host last answered it
    (None: never). Manual labels and unknown ids are left out."""
    found: list[tuple[DynamicLabel, int | None]] = []
    for chunk in in_chunks(sorted(set(label_ids))):
        rows = session.execute(
            select(Label, LabelMembership.evaluated_at)
            .outerjoin(
                LabelMembership,
                (LabelMembership.label_id == Label.id) & (LabelMembership.host_id == host_id),
            )
            .where(Label.id.in_(chunk), Label.query.is_not(None))
        )
        found.extend((_dynamic(label), evaluated) for label, evaluated in rows)
    return found


def record_evaluation(
    session: Session, label_id: int, host_id: int, member: bool, now: int
) -> None:
    row = session.get(LabelMembership, (label_id, host_id))
    if row is None:
        if session.get(Label, label_id) is None:
            return  # the label was deleted while the host was answering
        session.add(
            LabelMembership(label_id=label_id, host_id=host_id, member=member, evaluated_at=now)
        )
    else:
        row.member, row.evaluated_at = member, now


def delete_label(session: Session, name: str) -> bool:
    """Delete the label; its memberships go with it (``ON DELETE CASCADE``). False when
    there was no such label."""
    label = get_label(session, name)
    if label is None:
        return False
    session.execute(delete(LabelMembership).where(LabelMembership.label_id == label.id))
    session.delete(label)
    session.flush()
    return True
