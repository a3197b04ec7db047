"""Read what the judge needs from the store, in a handful of queries for all hosts in
scope: their streams, the telemetry-health rows, lineage and pipe fills, data-loss gaps
and the last validation of each scenario. Validations are matched to hosts as the fleet
identifies them: the same uuid and host identifier, else the same uuid when only one
host presents it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from fleetctl.coverage.facts import HostFacts, ValidationRun
from fleetctl.coverage.items import (
    BY_PLATFORM,
    LINEAGE_COLUMNS,
    PIPE_COLUMNS,
    STATE_QUERIES,
    WINDOWS,
)
from storage import coverage as coverage_store
from storage import hosts as host_store
from storage import validations as validation_store
from storage.hosts import host_family


def gather(
    session: Session, host_ids: Sequence[int]
) -> tuple[list[HostFacts], list[ValidationRun]]:
    """The facts of each host in ``host_ids`` (in id order), and the validations of
    machines that match no enrolled host."""
    chosen = set(host_ids)
    everyone = host_store.list_hosts(session)
    hosts = [h for h in everyone if h.id in chosen]
    ids = [h.id for h in hosts]
    histories = coverage_store.histories(session, ids)
    rows = coverage_store.current_rows(session, ids, STATE_QUERIES)
    lineage = coverage_store.fills(
        session, ids, {p.lineage for p in BY_PLATFORM.values()}, LINEAGE_COLUMNS
    )
    pipes = coverage_store.fills(session, ids, {WINDOWS.ipc[0][0]}, PIPE_COLUMNS)
    gaps = coverage_store.gaps(session, ids)
    runs, elsewhere = _validations(session, everyone, chosen)
    facts = [
        HostFacts(
            id=h.id,
            identifier=h.host_identifier,
            hostname=h.hostname,
            uuid=h.uuid,
            platform=host_family(h.platform, h.platform_type),
            os=f"{h.os_name} {h.os_version}".strip(),
            osquery_version=h.osquery_version,
            last_seen=h.last_seen,
            queries={(q.pack, q.query): q for q in histories[h.id]},
            rows=rows[h.id],
            fills={**lineage[h.id], **pipes[h.id]},
            gaps=tuple(gaps[h.id]),
            validations=tuple(runs.get(h.id, ())),
        )
        for h in hosts
    ]
    return facts, elsewhere


def _validations(
    session: Session, hosts: Sequence[host_store.Host], chosen: set[int]
) -> tuple[dict[int, list[ValidationRun]], list[ValidationRun]]:
    by_identity = {(h.uuid, h.host_identifier): h.id for h in hosts}
    by_uuid: dict[str, list[int]] = {}
    for h in hosts:
        by_uuid.setdefault(h.uuid, []).append(h.id)
    runs: dict[int, list[ValidationRun]] = {}
    elsewhere = []
    for v in validation_store.latest(session):
        host_id = by_identity.get((v.host_uuid, v.host_identifier))
        if host_id is None and len(by_uuid.get(v.host_uuid, [])) == 1:
            host_id = by_uuid[v.host_uuid][0]
        run = ValidationRun.of(v)
        if host_id is None:
            elsewhere.append(run)
        elif host_id in chosen:
            runs.setdefault(host_id, []).append(run)
    return runs, elsewhere
