"""The coverage report as one JSON document: every host's cells, the platform roll-up,
what fails and why, and purple-team evidence. What ``GET /api/v1/admin/coverage``
answers; the CLI's renderers read only this.

A platform's cell is its worst host's (one uncovered host is a hole in the platform),
with how many hosts are ok. The report fails (``ok`` false, exit status 1) when any
host misses an item or keeps less history than asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fleetctl.coverage.facts import HostFacts, ValidationRun
from fleetctl.coverage.items import ITEMS, MISSING, OK, PLATFORMS
from fleetctl.coverage.judge import Cell, HostJudgement, Judge, worst
from fleetctl.timeutil import format_duration, iso


def host_json(facts: HostFacts, judged: HostJudgement) -> dict[str, Any]:
    return {
        "id": facts.id,
        "host": facts.identifier,
        "hostname": facts.hostname,
        "uuid": facts.uuid,
        "platform": facts.platform,
        "os": facts.os,
        "osquery_version": facts.osquery_version,
        "last_seen": iso(facts.last_seen),
        "retention_seconds": judged.retention_seconds,
        "cells": {item: cell.json() for item, cell in judged.cells.items()},
        "validation": judged.validation.json(),
        "validations": [v.json() for v in facts.validations],
    }


def rollup(platform: str, hosts: Sequence[tuple[HostFacts, HostJudgement]]) -> dict[str, Any]:
    """One platform's cells: the worst host's status, and which hosts fall short."""
    cells = {}
    for item in ITEMS:
        judged = [(f.identifier, j.cells[item.id]) for f, j in hosts]
        status = worst(c.status for _, c in judged)
        ok = sum(1 for _, c in judged if c.status == OK)
        short = [f"{c.status} on {name}" for name, c in judged if c.status != OK]
        reason = f"ok on {ok} of {len(judged)} hosts" + (f"; {', '.join(short)}" if short else "")
        cells[item.id] = Cell(status, reason).json()
    return {"platform": platform, "hosts": len(hosts), "cells": cells}


def failures(facts: HostFacts, judged: HostJudgement) -> list[dict[str, str]]:
    """The cells that make the report fail: missing items, and too little history."""
    return [
        {
            "host": facts.identifier,
            "platform": facts.platform,
            "item": item,
            "status": cell.status,
            "reason": cell.reason,
        }
        for item, cell in judged.cells.items()
        if cell.status == MISSING or (item == "retention" and judged.retention_short)
    ]


def coverage_document(
    hosts: Sequence[HostFacts],
    now: int,
    retention: int,
    elsewhere: Sequence[ValidationRun] = (),
) -> dict[str, Any]:
    """The report of ``hosts`` at ``now``, asking for ``retention`` seconds of history;
    ``elsewhere`` are validations of machines that are not enrolled hosts."""
    judged = [(f, Judge(f, now, retention).judge()) for f in hosts]
    by_platform = {p: [(f, j) for f, j in judged if f.platform == p] for p in PLATFORMS}
    failing = [row for f, j in judged for row in failures(f, j)]
    return {
        "generated_at": iso(now),
        "retention_required": format_duration(retention),
        "items": [{"id": i.id, "title": i.title} for i in ITEMS],
        "platforms": [rollup(p, rows) for p, rows in by_platform.items() if rows],
        "hosts": [host_json(f, j) for f, j in judged],
        "failing": failing,
        "ok": not failing,
        "validated_elsewhere": [
            {"host": v.host_identifier, "uuid": v.host_uuid, **v.json()} for v in elsewhere
        ],
    }
