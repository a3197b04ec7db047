"""Scheduled hunts and their runs (session passed in); each run is a campaign."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.base import in_chunks
from storage.models import Campaign, CampaignTarget, HuntRun
from storage.models import Hunt as Hunt  # the record type hunts are returned as


def hunt_named(session: Session, name: str) -> Hunt | None:
    return session.scalars(select(Hunt).where(Hunt.name == name)).first()


def locked_hunt(session: Session, hunt_id: int) -> Hunt | None:
    """The hunt, locked for the rest of the transaction: one replica fires a slot."""
    return session.scalars(select(Hunt).where(Hunt.id == hunt_id).with_for_update()).first()


def list_hunts(session: Session) -> list[Hunt]:
    return list(session.scalars(select(Hunt).order_by(Hunt.name)))


def add_hunt(
    session: Session,
    *,
    name: str,
    sql: str,
    targets: str,
    schedule_kind: str,
    schedule: str,
    expires: int,
    now: int,
) -> Hunt:
    """A new active hunt."""
    hunt = Hunt(
        name=name,
        sql=sql,
        targets=targets,
        schedule_kind=schedule_kind,
        schedule=schedule,
        expires=expires,
        state="active",
        created_at=now,
    )
    session.add(hunt)
    return hunt


def runs(session: Session, hunt_id: int) -> list[HuntRun]:
    """The hunt's runs, first to last."""
    return list(
        session.scalars(select(HuntRun).where(HuntRun.hunt_id == hunt_id).order_by(HuntRun.run))
    )


def last_run(session: Session, hunt_id: int) -> HuntRun | None:
    return session.scalars(
        select(HuntRun).where(HuntRun.hunt_id == hunt_id).order_by(HuntRun.run.desc()).limit(1)
    ).first()


def add_run(session: Session, hunt_id: int, run: int, campaign_id: int, now: int) -> None:
    session.add(HuntRun(hunt_id=hunt_id, run=run, campaign_id=campaign_id, fired_at=now))


def delete_hunt(session: Session, hunt: Hunt) -> list[int]:
    """Delete the hunt, its runs and their campaigns with every host's answer, so its
    name is free again; the ids of the campaigns deleted."""
    campaign_ids = [r.campaign_id for r in runs(session, hunt.id)]
    session.execute(delete(HuntRun).where(HuntRun.hunt_id == hunt.id))
    for chunk in in_chunks(campaign_ids):
        session.execute(delete(CampaignTarget).where(CampaignTarget.campaign_id.in_(chunk)))
        session.execute(delete(Campaign).where(Campaign.id.in_(chunk)))
    session.delete(hunt)
    session.flush()
    return campaign_ids
