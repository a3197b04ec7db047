"""Retention of live queries and hunt runs (``db prune``), on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import func, select

from storage import campaigns as campaign_store
from storage import hosts as host_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from storage.models import Campaign, CampaignTarget, Hunt, HuntRun


def test_prune_keeps_open_campaigns_and_each_hunts_latest_run(db_url: str) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as session:
        host, *_ = host_store.enroll_host(
            session,
            host_identifier="h1",
            platform_type="9",
            host_details={},
            node_key_hash="k" * 64,
            now=1,
        )

        def campaign(kind: str, expires_at: int) -> int:
            made = campaign_store.create_campaign(
                session,
                kind=kind,
                name="",
                sql="SELECT 1",
                targets="all",
                host_ids=[host.id],
                now=1,
                expires_at=expires_at,
            )
            return made.id

        old_live, open_live = campaign("live", 100), campaign("live", 10_000)
        hunt = Hunt(
            name="h",
            sql="SELECT 1",
            targets="all",
            schedule_kind="every",
            schedule="60",
            expires=60,
            state="active",
            created_at=1,
        )
        session.add(hunt)
        session.flush()
        runs = [campaign("hunt", 100), campaign("hunt", 200)]
        session.add_all(
            HuntRun(hunt_id=hunt.id, run=n, campaign_id=cid, fired_at=n)
            for n, cid in enumerate(runs, start=1)
        )

    with session_scope(sessions) as session:
        assert campaign_store.prune(session, older_than=50) == 0
        assert campaign_store.prune(session, older_than=1_000) == 2  # old live query, run 1

    with session_scope(sessions) as session:
        assert set(session.scalars(select(Campaign.id))) == {open_live, runs[1]}
        assert list(session.scalars(select(HuntRun.run))) == [2]
        assert session.scalar(select(func.count()).select_from(CampaignTarget)) == 2
        assert old_live not in set(session.scalars(select(CampaignTarget.campaign_id)))
    engine.dispose()
