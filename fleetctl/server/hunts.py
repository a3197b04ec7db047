"""Scheduled hunts: APScheduler (3.x) fires runs; each run is a campaign to the targets.

Jobs live in APScheduler's SQLAlchemy job store in the fleet database (its table comes
from migration 0006), so hunts survive restarts. Every server process (each of
``serve --workers``, each replica) runs a scheduler, paused; only the process holding
the leader lock (``fleet_locks``: a PostgreSQL advisory lock on its own connection, or a
file lock under ``$FLEETCTL_HOME`` on SQLite) resumes it and fires jobs, so each run
fires once per fleet. The others try the lock every two seconds and take over when its
holder dies; the leader reads the job store every two seconds too, so a hunt created,
paused or cancelled through another process is fired (or not) within that. A firing is
refused when the hunt already ran within half its period, so a leader that takes over
after another died mid-firing does not run a job twice.

APScheduler stores a job as a reference to a module-level function, so ``fire`` finds
the running service through ``_SERVICE``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fleetctl.server.campaign_queue import CampaignQueue
from fleetctl.server.table_check import hosts_lacking_tables
from fleetctl.timeutil import shown
from storage import campaigns as campaign_store
from storage import fleet_locks
from storage import hunts as hunt_store
from storage.campaigns import Pending
from storage.engine import session_scope
from storage.hunts import Hunt

log = logging.getLogger("fleetctl.hunts")
_SERVICE: HuntService | None = None


def fire(hunt_id: int) -> None:
    """The APScheduler job: one run of hunt ``hunt_id``."""
    if _SERVICE is not None:
        _SERVICE.fire(hunt_id)


def trigger_for(kind: str, value: str, now: float) -> BaseTrigger:
    if kind == "cron":
        try:
            return CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(
                f"not a crontab expression: {shown(value)} ({exc}); it has five fields, "
                "minute hour day-of-month month day-of-week (UTC), e.g. '0 */6 * * *'"
            ) from None
    if kind == "every":
        return IntervalTrigger(seconds=int(value), start_date=_utc(now), timezone="UTC")
    if kind == "once":
        return DateTrigger(run_date=_utc(now), timezone="UTC")
    raise ValueError(f"unknown schedule {kind!r}")


def next_run(hunt: Hunt, has_run: bool, now: float) -> int | None:
    """When the hunt fires next, from its own row (the scheduler computes the same from
    the same trigger, to the second), so no admin call waits on the scheduler's lock."""
    if hunt.state != "active" or (hunt.schedule_kind == "once" and has_run):
        return None
    if hunt.schedule_kind == "every" and not has_run:
        return int(now)  # the first run is due at creation
    when = trigger_for(hunt.schedule_kind, hunt.schedule, hunt.created_at).get_next_fire_time(
        None, _utc(now)
    )
    return int(when.timestamp()) if when is not None else None


def _utc(ts: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC)


def period_of(hunt: Hunt) -> float:
    """Seconds between firings (a cron hunt fires at most once a minute)."""
    return float(hunt.schedule) if hunt.schedule_kind == "every" else 60.0


@dataclass
class HuntService:
    engine: Engine
    sessions: sessionmaker[Session]
    campaigns: CampaignQueue
    home: Path  # where SQLite's lock file lives
    scheduler: BackgroundScheduler = field(init=False)
    leader: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: fleet_locks.HeldLock | None = None

    def start(self) -> None:
        global _SERVICE
        _SERVICE = self
        self.scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine)},
            timezone="UTC",
            job_defaults={"coalesce": True, "misfire_grace_time": 3600, "max_instances": 1},
        )
        self.scheduler.start(paused=True)
        threading.Thread(target=self._lead, name="hunt-leader", daemon=True).start()

    def _lead(self) -> None:
        """Fire scheduled hunts while this process holds the leader lock: take it when
        it is free, and pause again should it be lost (a dropped database connection)."""
        while not self._stop.is_set():
            try:
                self._keep_or_take_lead()
            except Exception:
                log.exception("hunt leader lock failed; trying again")
            self._stop.wait(2.0)

    def _keep_or_take_lead(self) -> None:
        if self._lock is not None:
            if self._lock.alive():
                # Jobs added, paused or removed by another process's scheduler are in the
                # shared job store, but APScheduler only wakes for its own changes.
                self.scheduler.wakeup()
                return
            self._lock.release()
            self._lock, self.leader = None, False
            self.scheduler.pause()
            log.warning("lost the hunt leader lock: another process fires scheduled hunts")
        self._lock = fleet_locks.try_lock(self.engine, self.home, fleet_locks.HUNT_LEADER)
        if self._lock is not None and not self._stop.is_set():
            self.leader = True
            self.scheduler.resume()
            log.info("this process fires scheduled hunts")

    def stop(self) -> None:
        global _SERVICE
        self._stop.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self.leader = False
        if _SERVICE is self:
            _SERVICE = None

    # -- jobs ---------------------------------------------------------------------------

    def schedule(self, hunt: Hunt) -> None:
        """Add the hunt's job. An interval hunt runs at once, then every interval (as a
        cron hunt waits for its first slot)."""
        first: dict[str, Any] = {}
        if hunt.schedule_kind == "every":
            first["next_run_time"] = _utc(time.time())
        self.scheduler.add_job(
            fire,
            trigger_for(hunt.schedule_kind, hunt.schedule, hunt.created_at),
            args=[hunt.id],
            id=f"hunt-{hunt.id}",
            replace_existing=True,
            name=hunt.name,
            **first,
        )

    def pause(self, hunt: Hunt) -> None:
        if self.scheduler.get_job(f"hunt-{hunt.id}") is not None:
            self.scheduler.pause_job(f"hunt-{hunt.id}")

    def resume(self, hunt: Hunt) -> None:
        if self.scheduler.get_job(f"hunt-{hunt.id}") is not None:
            self.scheduler.resume_job(f"hunt-{hunt.id}")

    def cancel(self, hunt: Hunt) -> None:
        if self.scheduler.get_job(f"hunt-{hunt.id}") is not None:
            self.scheduler.remove_job(f"hunt-{hunt.id}")

    def fire(self, hunt_id: int, now: int | None = None) -> int | None:
        """Start the next run of the hunt; its run number, or None when refused."""
        now = int(time.time()) if now is None else now
        with session_scope(self.sessions) as session:
            hunt = hunt_store.locked_hunt(session, hunt_id)
            if hunt is None or hunt.state != "active":
                return None
            last = hunt_store.last_run(session, hunt_id)
            if last is not None and (
                hunt.schedule_kind == "once" or now - last.fired_at < period_of(hunt) / 2
            ):
                return None  # already fired for this slot (e.g. by a replica that died)
            host_ids = campaign_store.resolve_targets(session, hunt.targets)
            lacking = hosts_lacking_tables(session, hunt.sql, host_ids)
            host_ids = [h for h in host_ids if h not in lacking]
            run = (last.run if last else 0) + 1
            campaign = campaign_store.create_campaign(
                session,
                kind="hunt",
                name=f"{hunt.name}#{run}",
                sql=hunt.sql,
                targets=hunt.targets,
                host_ids=host_ids,
                now=now,
                expires_at=now + hunt.expires,
                skipped={h: why for h, (_, why) in lacking.items()},
            )
            hunt_store.add_run(session, hunt_id, run, campaign.id, now)
            pending = [Pending(campaign.id, h, hunt.sql, campaign.expires_at) for h in host_ids]
        self.campaigns.add(pending)
        log.info(
            "hunt %s run %s sent to %s hosts (%s skipped: a table missing)",
            hunt_id,
            run,
            len(pending),
            len(lacking),
        )
        return run
