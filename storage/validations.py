"""Purple-team evidence: the outcome of each ``fleetctl validate`` scenario per host
(session passed in).

Hosts are named by ``uuid`` and ``host_identifier``, as they enrolled, so evidence of a
machine that is not (or not yet) in the fleet is kept too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from storage.models import Validation as Validation  # the record type runs are returned as

#: The fields one run is recorded with, as ``record`` takes them.
FIELDS = (
    "host_uuid",
    "host_identifier",
    "hostname",
    "scenario",
    "name",
    "kind",
    "result",
    "seconds",
    "agent",
    "finding",
    "detail",
    "ran_at",
)


def record(session: Session, runs: Iterable[Mapping[str, Any]], now: int) -> int:
    """Store each run (a mapping of ``FIELDS``); returns how many were stored."""
    rows = [{**{f: run[f] for f in FIELDS}, "recorded_at": now} for run in runs]
    if rows:
        session.execute(insert(Validation), rows)
    return len(rows)


def latest(session: Session) -> list[Validation]:
    """The newest run of every scenario on every validated host (by ``ran_at``, then
    the later recorded), ordered by host and scenario."""
    newest = (
        func.row_number()
        .over(
            partition_by=(Validation.host_uuid, Validation.host_identifier, Validation.scenario),
            order_by=(Validation.ran_at.desc(), Validation.id.desc()),
        )
        .label("newest")
    )
    ranked = select(Validation.id, newest).subquery()
    query = (
        select(Validation)
        .join(ranked, ranked.c.id == Validation.id)
        .where(ranked.c.newest == 1)
        .order_by(Validation.host_identifier, Validation.host_uuid, Validation.scenario)
    )
    return list(session.scalars(query))


def history(session: Session, host: str | None = None, limit: int = 1000) -> list[Validation]:
    """Runs newest first, of the host whose uuid or identifier is ``host`` (or all)."""
    query = select(Validation)
    if host is not None:
        query = query.where((Validation.host_uuid == host) | (Validation.host_identifier == host))
    return list(
        session.scalars(query.order_by(Validation.ran_at.desc(), Validation.id.desc()).limit(limit))
    )


__all__ = ["FIELDS", "Validation", "history", "latest", "record"]
