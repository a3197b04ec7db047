"""Campaigns: distributed queries with per-host state (session passed in)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, bindparam, case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from storage import hosts as host_store
from storage import labels as label_store
from storage.base import in_chunks
from storage.hosts import host_family
from storage.models import Campaign, CampaignTarget, Host, HuntRun


class TargetError(ValueError):
    """A target spec that names nothing known."""


def resolve_targets(session: Session, spec: str) -> list[int]:
    """Host ids for ``all``, ``platform:P``, ``label:L``, ``host:H`` (comma-separated).

    Reads ids and platforms only: a run to 10,000 hosts must not load 10,000 hosts'
    enrollment details.
    """
    chosen: set[int] = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        kind, _, value = part.partition(":")
        if kind == "all" and not value:
            chosen.update(session.scalars(select(Host.id)))
        elif kind == "platform" and value:
            chosen.update(
                host_id
                for host_id, platform, platform_type in session.execute(
                    select(Host.id, Host.platform, Host.platform_type)
                )
                if host_family(platform, platform_type) == value or platform == value
            )
        elif kind == "label" and value:
            label = label_store.get_label(session, value)
            if label is None:
                raise TargetError(f"no label {value!r}")
            chosen.update(label_store.member_ids(session, label.id))
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
    skipped: Mapping[int, str] | None = None,
) -> Campaign:
    """The campaign and one ``queued`` target per host, inserted as one batch; each host
    of ``skipped`` (host id -> why it cannot run the query) is a ``skipped`` target that
    is never sent the query."""
    campaign = Campaign(
        kind=kind, name=name, sql=sql, targets=targets, created_at=now, expires_at=expires_at
    )
    session.add(campaign)
    session.flush()
    rows: list[dict[str, object]] = [
        {"campaign_id": campaign.id, "host_id": h, "state": "queued", "message": ""}
        for h in host_ids
    ] + [
        {"campaign_id": campaign.id, "host_id": h, "state": "skipped", "message": why}
        for h, why in (skipped or {}).items()
    ]
    if rows:
        session.connection().execute(insert(cast(Table, CampaignTarget.__table__)), rows)
    return campaign


@dataclass(frozen=True)
class Pending:
    campaign_id: int
    host_id: int
    sql: str
    expires_at: int


def get_campaign(session: Session, campaign_id: int) -> Campaign | None:
    return session.get(Campaign, campaign_id)


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


def open_targets(
    session: Session, host_id: int, campaign_ids: list[int], now: int
) -> dict[int, bool]:
    """Of ``campaign_ids``, those that target this host and have not expired, each with
    whether its hand-out is recorded (``sent_at``): what a host's answers are judged by."""
    found: dict[int, bool] = {}
    for chunk in in_chunks(sorted(set(campaign_ids))):
        rows = session.execute(
            select(CampaignTarget.campaign_id, CampaignTarget.sent_at)
            .join(Campaign, Campaign.id == CampaignTarget.campaign_id)
            .where(
                CampaignTarget.host_id == host_id,
                CampaignTarget.campaign_id.in_(chunk),
                Campaign.expires_at > now,
            )
        )
        found.update((cid, sent_at is not None) for cid, sent_at in rows)
    return found


def record_answer(
    session: Session,
    campaign_id: int,
    host_id: int,
    status: int,
    message: str,
    rows: list[dict[str, str]],
    now: int,
) -> bool:
    """Store a host's answer in one statement; False when the host is not a target."""
    result = session.execute(
        update(CampaignTarget)
        .where(CampaignTarget.campaign_id == campaign_id, CampaignTarget.host_id == host_id)
        .values(state="done" if status == 0 else "failed", message=message, rows=rows, done_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


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


@dataclass(frozen=True)
class Counts:
    """Targets per state, and of those the hosts seen recently (online), per state; and
    when the latest answer was stored (a follower's cursor)."""

    states: dict[str, int]
    online: dict[str, int]
    last_answer_at: int | None

    @property
    def answered(self) -> int:
        return sum(self.states.get(s, 0) for s in FINISHED)

    @property
    def online_answered(self) -> int:
        return sum(self.online.get(s, 0) for s in FINISHED)


def counts(session: Session, campaign_id: int, online_since: int) -> Counts:
    """Every count from one statement, so that they agree with each other."""
    rows = session.execute(
        select(
            CampaignTarget.state,
            func.count(),
            func.count().filter(Host.last_seen >= online_since),
            func.max(CampaignTarget.done_at),
        )
        .join(Host, Host.id == CampaignTarget.host_id)
        .where(CampaignTarget.campaign_id == campaign_id)
        .group_by(CampaignTarget.state)
    ).all()
    answered_at = [at for _, _, _, at in rows if at is not None]
    return Counts(
        {s: int(n) for s, n, _, _ in rows},
        {s: int(n) for s, _, n, _ in rows},
        max(answered_at) if answered_at else None,
    )


def host_messages(session: Session, campaign_id: int, state: str) -> list[tuple[str, str]]:
    """(host identifier, message) of each target in ``state``: osquery's error message of
    a ``failed`` answer, or why a ``skipped`` host was not sent the query."""
    query = (
        select(Host.host_identifier, CampaignTarget.message)
        .join(Host, Host.id == CampaignTarget.host_id)
        .where(CampaignTarget.campaign_id == campaign_id, CampaignTarget.state == state)
        .order_by(Host.host_identifier)
    )
    return [(ident, message) for ident, message in session.execute(query)]


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


def prune(session: Session, older_than: int) -> int:
    """Delete live queries, and hunt runs other than each hunt's latest (the baseline
    of its next ``--diff``), that expired before ``older_than``; how many went."""
    latest = (
        select(HuntRun.hunt_id, func.max(HuntRun.run).label("run"))
        .group_by(HuntRun.hunt_id)
        .subquery()
    )
    kept = select(HuntRun.campaign_id).join(
        latest, (latest.c.hunt_id == HuntRun.hunt_id) & (latest.c.run == HuntRun.run)
    )
    doomed = list(
        session.scalars(
            select(Campaign.id).where(Campaign.expires_at < older_than, Campaign.id.not_in(kept))
        )
    )
    for chunk in in_chunks(doomed):
        session.execute(delete(HuntRun).where(HuntRun.campaign_id.in_(chunk)))
        session.execute(delete(CampaignTarget).where(CampaignTarget.campaign_id.in_(chunk)))
        session.execute(delete(Campaign).where(Campaign.id.in_(chunk)))
    return len(doomed)
