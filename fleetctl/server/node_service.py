"""What the osquery endpoints do, as plain functions over a Session.

Handlers in ``osquery_api`` parse and authenticate; these functions validate the
payload and write it in the caller's transaction, so a failure anywhere rolls the
whole request back and osqueryd resends it. A log line the store cannot hold is the
exception: it is quarantined (``storage.rejected``) and the rest of its batch stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from fleetctl import __version__
from fleetctl.errors import BadRequest
from fleetctl.ingest import (
    host_identifiers,
    line_digests,
    parse_result_lines,
    parse_status_lines,
)
from fleetctl.server.osquery_config import PACK_DELIMITER
from fleetctl.targeting import targeted
from storage import campaigns as campaign_store
from storage import coordination, enroll_secrets
from storage import hosts as host_store
from storage import logs as log_store
from storage import packs as pack_store
from storage.campaigns import Pending
from storage.encoding import encoder_for
from storage.hosts import Host
from storage.rejected import Rejection, record
from storage.results import ApplyStats, apply_runs, apply_runs_one_by_one
from storage.runs import Run

log = logging.getLogger("fleetctl.server")


@dataclass(frozen=True)
class PackIndex:
    """What ingest needs to know of the applied packs: their names (to split logged
    names with ``_`` in pack names) and the logged names of ``removed: false`` queries."""

    pack_names: tuple[str, ...] = ()
    no_removed_names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, session: Session) -> PackIndex:
        names, quiet = [], set()
        for stored in pack_store.current_packs(session):
            names.append(stored.name)
            for query in targeted(stored).pack.queries:
                if not query.removed:
                    quiet.add(f"pack{PACK_DELIMITER}{stored.name}{PACK_DELIMITER}{query.name}")
        return cls(tuple(names), frozenset(quiet))


# Where the server's own lines about a host appear in its status logs.
STATUS_FILENAME = "fleetctl-server"


@dataclass(frozen=True)
class Enrolled:
    host_id: int
    created: bool
    family: str
    joined: list[Pending]  # the open hunt runs the host joined
    clone_of: tuple[str, ...] = ()  # identifiers of other hosts with its uuid, if new


# An enrollment from another osquery instance this soon after the host's last check-in
# is a second osqueryd, not a reinstall (osqueryd stops, its database is wiped, it starts).
CLONE_WINDOW = 120


def is_second_instance(
    identity: str, instance: str, earlier: str, earlier_seen: int | None, now: int
) -> bool:
    """Whether a re-enrollment comes from a second live osqueryd: its instance id is not
    the one the host had, and that one checked in within ``CLONE_WINDOW`` seconds."""
    return (
        identity != "instance"
        and bool(instance and earlier)
        and instance != earlier
        and earlier_seen is not None
        and now - earlier_seen < CLONE_WINDOW
    )


def enroll(
    session: Session,
    *,
    identity: str,
    host_identifier: str,
    platform_type: str,
    host_details: dict[str, Any],
    node_key_hash: str,
    now: int,
    label_id: int | None = None,
) -> Enrolled:
    """Enroll (or re-enroll) a host under the server's host identity, put it in the label
    of the enroll secret it came with (``label_id``) and add it to the open hunt runs
    that target it. A new host whose uuid other hosts present (a cloned
    machine) is kept as a host of its own, and says so in its status log; so does a host
    that a second live osqueryd, with the same identifier and uuid, enrolls as."""
    host, created, earlier_instance, earlier_seen = host_store.enroll_host(
        session,
        host_identifier=host_identifier,
        platform_type=platform_type,
        host_details=host_details,
        node_key_hash=node_key_hash,
        now=now,
        identity=identity,
    )
    peers = tuple(host_store.uuid_peers(session, {host.id}).get(host.id, ())) if created else ()
    advice = (
        "; `fleetctl serve --host-identity instance` tells clones apart"
        if identity == "uuid"
        else ""
    )
    said = ""
    if peers:
        said = (
            f"uuid {host.uuid} is also presented by {', '.join(peers)} (a cloned machine?):"
            f" enrolled as a host of its own{advice}"
        )
    elif is_second_instance(identity, host.instance_id, earlier_instance, earlier_seen, now):
        said = (
            f"osquery instance {host.instance_id} enrolled as this host while instance"
            f" {earlier_instance} checked in {now - (earlier_seen or now)} s ago: two osqueryd"
            f" with one identifier and uuid (a cloned machine?) share this host{advice}"
        )
    if said:
        log_store.add_server_status(session, host.id, now, STATUS_FILENAME, said, __version__)
    if not created:  # other server processes must forget the host's old key
        coordination.publish(session, coordination.NODE_KEY, host.id, now)
    if label_id is not None:
        enroll_secrets.join_label(session, label_id, host.id, now)
    joined = campaign_store.join_open_hunts(session, host.id, now)
    family = host_store.host_family(host.platform, host.platform_type)
    return Enrolled(host.id, created, family, joined, peers)


def lock_host(session: Session, host_id: int) -> Host:
    """The host, its writes serialised for the rest of the transaction; a host deleted
    meanwhile is a refused request."""
    host = host_store.lock_host(session, host_id)
    if host is None:
        raise BadRequest("host was deleted")
    return host


def _check_identifiers(session: Session, host: Host, identifiers: set[str]) -> set[str]:
    """The identifiers among ``identifiers`` that name another enrolled host: each host
    sends only its own results, so lines naming another are quarantined, not stored as
    this host's. No query when every line names this host (the usual case), one when no
    other enrolled host is named, then one per stranger."""
    strangers = identifiers - {host.host_identifier, host.hostname}
    if not strangers or host_store.other_host_with_identifier(session, host.id, strangers) is None:
        return set()
    return {
        i
        for i in strangers
        if host_store.other_host_with_identifier(session, host.id, {i}) is not None
    }


def _apply_results(
    session: Session,
    host: Host,
    runs: list[Run],
    now: int,
    index: PackIndex,
    one_by_one: bool,
    collect: Callable[[str], bool] | None = None,
) -> tuple[ApplyStats, list[Rejection]]:
    """Apply the runs; the host's decorations become those of the last decorated run."""
    refused: list[Rejection] = []
    if one_by_one:
        stats, failed = apply_runs_one_by_one(
            session, host.id, runs, now, index.pack_names, index.no_removed_names, collect
        )
        refused = [Rejection(i, reason, run.name) for run, reason in failed for i in run.lines]
        dropped = {id(run) for run, _ in failed}
        runs = [run for run in runs if id(run) not in dropped]
    else:
        stats = apply_runs(
            session, host.id, runs, now, index.pack_names, index.no_removed_names, collect
        )
    decorated = next((r.decorations for r in reversed(runs) if r.decorations), None)
    if decorated is not None:
        stored = dict(encoder_for(session).row(decorated))
        if stored != host.decorations:
            host.decorations = stored
    return stats, refused


def ingest_log(
    session: Session,
    host_id: int,
    log_type: Any,
    data: Any,
    now: int,
    packs: PackIndex | None = None,
    *,
    one_by_one: bool = False,
    collect: Callable[[str], bool] | None = None,
) -> ApplyStats:
    """Validate and apply one ``log`` request for one host.

    Lines that cannot be stored as sent are quarantined with their reason and the rest
    applied, so the batch is acknowledged. ``one_by_one`` is the retry after the
    database refused the batch with a data error: each run (each status line) is
    applied under its own savepoint and one the database refuses is quarantined too.
    ``collect``: the queries whose row changes ``ApplyStats.applied`` returns.
    """
    if log_type not in ("result", "status"):
        raise BadRequest(f"unknown log_type {log_type!r}: expected 'result' or 'status'")
    if not isinstance(data, list):
        raise BadRequest(f"'data' must be a list of log lines, got {type(data).__name__}")
    host = lock_host(session, host_id)
    digests, unencodable = line_digests(data)
    skip = log_store.delivered(session, host_id, log_type, digests, now)
    lines = data[skip:]
    foreign = _check_identifiers(session, host, host_identifiers(lines))
    if log_type == "result":
        index = packs or PackIndex()
        batch = parse_result_lines(
            lines, index.pack_names, start=skip, refused=unencodable, foreign=foreign
        )
        stats, refused = _apply_results(session, host, batch.runs, now, index, one_by_one, collect)
        rejected = batch.rejected
    else:
        statuses, rejected = parse_status_lines(
            lines, start=skip, refused=unencodable, foreign=foreign
        )
        stats, refused = (
            ApplyStats(),
            log_store.insert_statuses(session, host_id, statuses, one_by_one),
        )
    rejected = sorted([*rejected, *refused], key=lambda r: r.index)
    record(session, host_id, log_type, data, rejected, now)
    stats.rejected = len(rejected)
    return stats
