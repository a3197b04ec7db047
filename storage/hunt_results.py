"""Pages of a hunt run's rows, expanded and paginated by the database (session passed in).

A run to 10,000 hosts returning 20 rows each holds 200,000 rows as per-host JSON arrays;
expanding them in Python for every page cost a second and a hundred megabytes. Here the
database expands the arrays (``json_each`` / ``jsonb_array_elements``), orders them by
host and position, and returns one page. ``diff`` keeps only rows absent from the same
host's latest answered earlier run of the hunt (a differential hunt); rows compare as
JSON values (PostgreSQL ``jsonb`` equality; SQLite the stored text, which is stable for
one query's columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.orm import Session

from storage.views import json_array_rows


@dataclass(frozen=True)
class Page:
    total: int
    rows: list[dict[str, Any]]


def _query(dialect: str, diff: bool, columns: str) -> str:
    """SELECT ``columns`` over the run's expanded rows; with ``diff``, the previous
    answers' rows are expanded once (a CTE) and matched by (host, value)."""
    if not diff:
        return f"""SELECT {columns}
        FROM campaign_targets t
        JOIN hosts h ON h.id = t.host_id
        {json_array_rows(dialect, "e", "t.rows")}
        WHERE t.campaign_id = :campaign_id AND t.state = 'done'"""
    return f"""WITH previous_run AS (
            SELECT t2.host_id, max(r2.run) AS run
            FROM hunt_runs r2 JOIN campaign_targets t2 ON t2.campaign_id = r2.campaign_id
            WHERE r2.hunt_id = :hunt_id AND r2.run < :run AND t2.state = 'done'
            GROUP BY t2.host_id),
        previous_rows AS MATERIALIZED (
            SELECT p.host_id, pe.value
            FROM previous_run pr
            JOIN hunt_runs r3 ON r3.hunt_id = :hunt_id AND r3.run = pr.run
            JOIN campaign_targets p ON p.campaign_id = r3.campaign_id AND p.host_id = pr.host_id
            {json_array_rows(dialect, "pe", "p.rows")})
        SELECT {columns}
        FROM campaign_targets t
        JOIN hosts h ON h.id = t.host_id
        {json_array_rows(dialect, "e", "t.rows")}
        WHERE t.campaign_id = :campaign_id AND t.state = 'done'
          AND NOT EXISTS (
            SELECT 1 FROM previous_rows x WHERE x.host_id = t.host_id AND x.value = e.value)"""


def run_rows(
    session: Session,
    *,
    hunt_id: int,
    run: int,
    campaign_id: int,
    diff: bool,
    offset: int,
    limit: int,
) -> Page:
    """One page of the run's rows, each with its ``host``, ordered by host then position."""
    dialect = session.get_bind().dialect.name
    params = {"hunt_id": hunt_id, "run": run, "campaign_id": campaign_id}
    total = session.execute(text(_query(dialect, diff, "count(*)")), params).scalar_one()
    page = session.execute(
        text(
            _query(dialect, diff, "h.host_identifier, e.value")
            + " ORDER BY h.host_identifier, t.host_id, e.key LIMIT :limit OFFSET :offset"
        ),
        {**params, "limit": limit, "offset": offset},
    )
    rows = [
        {"host": host, **(orjson.loads(value) if isinstance(value, str | bytes) else value)}
        for host, value in page
    ]
    return Page(int(total), rows)
