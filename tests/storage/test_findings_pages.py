"""The findings listing pages: ``limit`` from ``offset`` of one fixed order (most severe
first), with the severity filter in the statement, so that every page of a filtered
queue is full and no finding is on two pages or none."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from storage import findings as findings_store
from storage import hosts as host_store
from storage.engine import make_engine, make_sessionmaker, session_scope

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_console import SEVERITIES, Finding, Occurrence  # findings as the store takes them

NOW = 1_780_000_000


def stored(db_url: str, count: int) -> list[str]:
    """``count`` findings of mixed severity on one host; their ids."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    made = []
    for i in range(count):
        severity = SEVERITIES[i % len(SEVERITIES)]
        made.append(
            Finding(
                id=f"{i:020x}",
                key=f"sshd>bash>sh<fifo:/tmp/.f{i}",
                pid=1000 + i,
                parent="bash",
                child="sh",
                severity=severity,
                score=40 + 10 * SEVERITIES.index(severity),
                first_seen=NOW - i,
                last_seen=NOW - i,
                occurrences=(Occurrence(1000 + i, None, severity, 50),),
            )
        )
    with session_scope(sessions) as session:
        host, *_ = host_store.enroll_host(
            session,
            host_identifier="pages",
            platform_type="9",
            host_details={"system_info": {"uuid": "pages"}},
            node_key_hash=uuid.uuid4().hex * 2,
            now=NOW,
        )
        findings_store.save_findings(session, int(host.id), made, lambda a, b: a == b)
    engine.dispose()
    return [f.id for f in made]


def test_pages_cover_the_filtered_queue_once_in_order(db_url: str) -> None:
    ids = stored(db_url, 50)
    serious = {i for n, i in enumerate(ids) if SEVERITIES[n % 4] in ("high", "critical")}
    engine = make_engine(db_url)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            every = findings_store.list_findings(session, severities=("high", "critical"))
            pages = [
                findings_store.list_findings(
                    session, severities=("high", "critical"), limit=7, offset=offset
                )
                for offset in range(0, 28, 7)
            ]
    finally:
        engine.dispose()
    assert {r.row.id for r in every} == serious
    assert [len(p) for p in pages] == [7, 7, 7, 3]  # 24 high or critical: every page full
    assert [r.row.id for p in pages for r in p] == [r.row.id for r in every]
    scores = [r.row.score for r in every]
    assert scores == sorted(scores, reverse=True)
