"""Campaigns: distributed queries with per-host state (session passed in)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from fleetctl.targeting import host_family
from storage import hosts as host_store
from storage import labels as label_store
from storage.models import Campaign, CampaignTarget, Host


class TargetError(ValueError):
    """A target spec that names nothing known."""


def resolve_targets(session: Session, spec: str) -> list[int]:
    """Host ids for ``all``, ``platform:P``, ``label:L``, ``host:H`` (comma-separated)."""
    hosts = list(session.scalars(select(Host)))
    chosen: set[int] = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        kind, _, value = part.partition(":")
        if kind == "all" and not value:
            chosen |= {h.id for h in hosts}
        elif kind == "platform" and value:
            chosen |= {
                h.id
                for h in hosts
                if host_family(h.platform, h.platform_type) == value or h.platform == value
            }
        elif kind == "label" and value:
            label = label_store.get_label(session, value)
            if label is None:
                raise TargetError(f"no label {value!r}")
            chosen |= {h.id for h, _ in label_store.members(session, label.id)}
        elif kind == "host" and value:
            host = host_store.find_host(session, value)
            if host is None:
                raise TargetError(f"no host matches {value!r}")
            chosen.add(host.id)
        else:
            raise TargetError(f"bad target {part!r}: use all, platform:P, label:L or host:H")
    return sorted(chosen)


def create_campaign(
    session: Session,
    *,
    kind: str,
    name: str,
    sql: str,
    targets: str,
    host_ids: list[int],
    now: int,
    expires_at: int,
) -> Campaign:
    campaign = Campaign(
        kind=kind, name=name, sql=sql, targets=targets, created_at=now, expires_at=expires_at
    )
    session.add(campaign)
    session.flush()
    session.add_all(
        CampaignTarget(campaign_id=campaign.id, host_id=h, state="queued", message="")
        for h in host_ids
    )
    return campaign


@dataclass(frozen=True)
class Pending:
    campaign_id: int
    host_id: int
    sql: str
    expires_at: int


def pending(session: Session, now: int) -> list[Pending]:
    """Queued targets of campaigns that have not expired (for the in-memory queue)."""
    rows = session.execute(
        select(
            CampaignTarget.campaign_id, CampaignTarget.host_id, Campaign.sql, Campaign.expires_at
        )
        .join(Campaign, Campaign.id == CampaignTarget.campaign_id)
        .where(CampaignTarget.state == "queued", Campaign.expires_at > now)
    )
    return [Pending(*r) for r in rows]


def mark_sent(session: Session, sent: dict[tuple[int, int], int]) -> None:
    """Record hand-outs, (campaign id, host id) -> time, in one statement batch.

    A target already answered keeps its state (the answer may be written first) but
    still gets its ``sent_at``.
    """
    if not sent:
        return
    target = cast(Table, CampaignTarget.__table__)
    session.connection().execute(
        update(target)
        .where(target.c.campaign_id == bindparam("cid"), target.c.host_id == bindparam("hid"))
        .values(
            state=case((target.c.state == "queued", "sent"), else_=target.c.state),
            sent_at=func.coalesce(target.c.sent_at, bindparam("at")),
        ),
        [{"cid": cid, "hid": hid, "at": at} for (cid, hid), at in sent.items()],
    )


def record_answer(
    session: Session,
    campaign_id: int,
    host_id: int,
    status: int,
    message: str,
    rows: list[dict[str, str]],
    now: int,
) -> bool:
    target = session.get(CampaignTarget, (campaign_id, host_id))
    if target is None:
        return False
    target.state = "done" if status == 0 else "failed"
    target.message, target.rows, target.done_at = message, rows, now
    return True


def expire(session: Session, now: int) -> int:
    """Targets of expired campaigns that never answered become ``expired``."""
    expired = select(Campaign.id).where(Campaign.expires_at <= now).scalar_subquery()
    result = session.execute(
        update(CampaignTarget)
        .where(
            CampaignTarget.campaign_id.in_(expired), CampaignTarget.state.in_(("queued", "sent"))
        )
        .values(state="expired")
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


FINISHED = ("done", "failed")


def progress(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.execute(
        select(CampaignTarget.state, func.count())
        .where(CampaignTarget.campaign_id == campaign_id)
        .group_by(CampaignTarget.state)
    )
    return {state: int(n) for state, n in rows}


def online_progress(session: Session, campaign_id: int, online_since: int) -> tuple[int, int]:
    """(targets seen since ``online_since``, how many of those answered)."""
    online, answered = session.execute(
        select(func.count(), func.count().filter(CampaignTarget.state.in_(FINISHED)))
        .join(Host, Host.id == CampaignTarget.host_id)
        .where(CampaignTarget.campaign_id == campaign_id, Host.last_seen >= online_since)
    ).one()
    return int(online), int(answered)


def last_answer_at(session: Session, campaign_id: int) -> int | None:
    return session.scalar(
        select(func.max(CampaignTarget.done_at)).where(CampaignTarget.campaign_id == campaign_id)
    )


def answers(
    session: Session, campaign_id: int, since: int | None = None
) -> list[tuple[CampaignTarget, str]]:
    """Every target with its host identifier; with ``since``, only the answers (done or
    failed) stored at or after that time, so a follower fetches each answer about once."""
    query = (
        select(CampaignTarget, Host.host_identifier)
        .join(Host, Host.id == CampaignTarget.host_id)
        .where(CampaignTarget.campaign_id == campaign_id)
        .order_by(CampaignTarget.done_at, CampaignTarget.host_id)
    )
    if since is not None:
        query = query.where(CampaignTarget.state.in_(FINISHED), CampaignTarget.done_at >= since)
    return [(t, ident) for t, ident in session.execute(query)]


def join_open_hunts(session: Session, host_id: int, now: int) -> list[Pending]:
    """Add a newly enrolled host to every open hunt run whose targets include it, so a
    hunt reaches hosts that enroll after it fired (until the run expires)."""
    joined = []
    open_runs = session.scalars(
        select(Campaign).where(Campaign.kind == "hunt", Campaign.expires_at > now)
    )
    for campaign in open_runs:
        if session.get(CampaignTarget, (campaign.id, host_id)) is not None:
            continue
        try:
            targeted = host_id in resolve_targets(session, campaign.targets)
        except TargetError:
            continue  # a label deleted since the run fired
        if targeted:
            session.add(
                CampaignTarget(campaign_id=campaign.id, host_id=host_id, state="queued", message="")
            )
            joined.append(Pending(campaign.id, host_id, campaign.sql, campaign.expires_at))
    return joined
