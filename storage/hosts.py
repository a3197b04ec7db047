"""Hosts (session passed in)."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Iterable, Mapping
from typing import Any, NamedTuple

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.orm import Session

from storage.base import IN_CHUNK, ids_by_time, in_chunks
from storage.models import Host as Host  # the record type hosts are returned as
from storage.models import ResultRow, Validation

PLATFORM_TYPES = {"9": "linux", "21": "darwin", "2": "windows"}


def host_family(platform: str, platform_type: str = "") -> str:
    """linux, darwin or windows, from ``os_version.platform`` or the enroll platform type."""
    word = (platform or "").lower()
    if word in ("darwin", "macos", "mac os x"):
        return "darwin"
    if word.startswith("windows"):
        return "windows"
    if word:
        return "linux"
    return PLATFORM_TYPES.get(platform_type, "linux")


class Enrollment(NamedTuple):
    host: Host
    created: bool
    earlier_instance: str  # the osquery instance id the host had ("" when new or unknown)
    earlier_seen: int | None  # its last check-in before this enrollment


def _detail(details: Mapping[str, Any], table: str, column: str) -> str:
    row = details.get(table)
    if isinstance(row, dict):
        value = row.get(column)
        return "" if value is None else str(value)
    return ""


def _enrolled(
    session: Session, identity: str, uuid: str, identifier: str, instance: str, hostname: str
) -> Host | None:
    """The host this enrollment is under ``identity`` (None: a new host), locked."""

    def first(*where: Any) -> Host | None:
        query = select(Host).where(*where).order_by(Host.id).with_for_update()
        return session.scalars(query).first()

    if identity == "instance" and instance:
        return first(Host.instance_id == instance) or first(
            # enrolled before its instance id was known
            Host.instance_id == "",
            Host.uuid == uuid,
            Host.host_identifier == identifier,
        )
    if identity == "hostname":
        return first(Host.hostname == hostname, Host.uuid == uuid) or first(
            Host.hostname == hostname
        )
    # uuid: another identifier presenting the uuid is another machine (a clone), not
    # this host under a new name; merging them made one host flip between the two.
    return first(Host.uuid == uuid, Host.host_identifier == identifier)


def _lock_identity(session: Session, key: str) -> None:
    """PostgreSQL: serialise enrollments of one identity, so two at once make one host
    (two-key advisory locks never meet ``lock_host``'s one-key ones). SQLite's write
    transaction already serialises them."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(1559, hashtext(:key))"), {"key": key})


def enroll_host(
    session: Session,
    *,
    host_identifier: str,
    platform_type: str,
    host_details: Mapping[str, Any],
    node_key_hash: str,
    now: int,
    identity: str = "uuid",
) -> Enrollment:
    """Create or re-key the host that this enrollment is under ``identity``
    (``Settings.host_identity``): ``uuid`` (``system_info.uuid`` and the host identifier),
    ``instance`` (``osquery_info.instance_id``; without one, as ``uuid``) or ``hostname``.
    The host keeps its history.

    Returns the host, whether it was newly created and, for a host enrolled before, the
    osquery instance id and last check-in it had until now.
    """
    uuid = _detail(host_details, "system_info", "uuid") or f"host-identifier:{host_identifier}"
    instance = _detail(host_details, "osquery_info", "instance_id")[:128]
    hostname = _detail(host_details, "system_info", "hostname") or host_identifier
    key = {"instance": instance, "hostname": hostname}.get(identity) or uuid
    _lock_identity(session, f"{identity}:{key}")
    host = _enrolled(session, identity, uuid, host_identifier, instance, hostname)
    created = host is None
    earlier = ("", None) if host is None else (host.instance_id or "", host.last_seen)
    if host is None:
        host = Host(uuid=uuid, enrolled_at=now, enroll_count=0)
        session.add(host)
    host.uuid = uuid
    host.instance_id = instance
    host.host_identifier = host_identifier
    host.hostname = hostname
    host.platform = _detail(host_details, "os_version", "platform") or PLATFORM_TYPES.get(
        platform_type, ""
    )
    host.platform_type = platform_type
    host.os_name = _detail(host_details, "os_version", "name")
    host.os_version = _detail(host_details, "os_version", "version")
    host.osquery_version = _detail(host_details, "osquery_info", "version")
    host.host_details = dict(host_details)
    host.node_key_hash = node_key_hash
    host.last_enrolled_at = now
    host.last_seen = now
    host.enroll_count = (host.enroll_count or 0) + 1
    session.flush()
    return Enrollment(host, created, *earlier)


def uuid_peers(session: Session, host_ids: Collection[int] | None = None) -> dict[int, list[str]]:
    """host id -> the identifiers of the other hosts presenting its uuid (cloned
    machines), for the hosts that share one (of ``host_ids``, or all)."""
    shared = select(Host.uuid).group_by(Host.uuid).having(func.count() > 1)
    query = select(Host.id, Host.uuid, Host.host_identifier).where(Host.uuid.in_(shared))
    by_uuid: dict[str, list[tuple[int, str]]] = {}
    for host_id, uuid, identifier in session.execute(query.order_by(Host.id)):
        by_uuid.setdefault(uuid, []).append((host_id, identifier))
    peers: dict[int, list[str]] = {}
    for hosts in by_uuid.values():
        for host_id, _ in hosts:
            if host_ids is None or host_id in host_ids:
                peers[host_id] = [ident for other, ident in hosts if other != host_id]
    return peers


def host_by_node_key(session: Session, node_key_hash: str) -> Host | None:
    return session.scalars(select(Host).where(Host.node_key_hash == node_key_hash)).first()


def node_keys(session: Session) -> list[tuple[str, int, str, str]]:
    """(node key digest, host id, identifier, platform family) of every host, for the cache."""
    rows = session.execute(
        select(Host.node_key_hash, Host.id, Host.host_identifier, Host.platform, Host.platform_type)
    )
    return [
        (r.node_key_hash, r.id, r.host_identifier, host_family(r.platform, r.platform_type))
        for r in rows
    ]


def families(session: Session, host_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    """host id -> (host identifier, platform family) for ``host_ids``."""
    found: dict[int, tuple[str, str]] = {}
    for chunk in in_chunks(list(host_ids)):
        query = select(Host.id, Host.host_identifier, Host.platform, Host.platform_type).where(
            Host.id.in_(chunk)
        )
        for host_id, ident, platform, platform_type in session.execute(query):
            found[host_id] = (ident, host_family(platform, platform_type))
    return found


def find_host(session: Session, ref: str) -> Host | None:
    """Look a host up by id, host identifier, hostname or uuid (in that order)."""
    if ref.isdigit():
        host = session.get(Host, int(ref))
        if host is not None:
            return host
    for column in (Host.host_identifier, Host.hostname, Host.uuid):
        hosts = list(session.scalars(select(Host).where(column == ref).limit(2)))
        if len(hosts) == 1:
            return hosts[0]
    return None


def list_hosts(session: Session) -> list[Host]:
    return list(session.scalars(select(Host).order_by(Host.id)))


def other_host_with_identifier(session: Session, host_id: int, identifiers: set[str]) -> str | None:
    """An identifier among ``identifiers`` that belongs to a different enrolled host."""
    found = session.scalars(
        select(Host.host_identifier).where(
            Host.id != host_id,
            or_(Host.host_identifier.in_(identifiers), Host.hostname.in_(identifiers)),
        )
    ).first()
    return found


def touch_hosts(session: Session, last_seen: Mapping[int, int], chunk: int = IN_CHUNK) -> None:
    """Record check-in times (flushed periodically), a statement per distinct second."""
    for ts, ids in ids_by_time(last_seen, chunk):
        session.execute(
            update(Host)
            .where(Host.id.in_(ids))
            .values(last_seen=ts)
            .execution_options(synchronize_session=False)
        )


def lock_host(session: Session, host_id: int) -> Host | None:
    """Serialise writes per host for the rest of the transaction; the host, or None if
    it was deleted.

    PostgreSQL: a transaction-scoped advisory lock, so check-in updates of the host row
    never wait behind an ingest. SQLite: the write transaction already holds the lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": host_id})
    return session.get(Host, host_id)


def delete_host(session: Session, host_id: int) -> bool:
    """Delete the host with its whole history: result rows (kept without a foreign key,
    so deleted here), and through the foreign keys' ``ON DELETE CASCADE`` its status
    logs, data-loss markers, quarantined lines, carves, label memberships, detection
    history, findings and campaign targets; and the purple-team validations recorded
    under its uuid and identifier. False when there was no such host."""
    host = lock_host(session, host_id)
    if host is None:
        return False
    session.expunge(host)
    session.execute(
        delete(Validation).where(
            Validation.host_uuid == host.uuid, Validation.host_identifier == host.host_identifier
        )
    )
    session.execute(
        delete(ResultRow)
        .where(ResultRow.host_id == host_id)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(Host).where(Host.id == host_id).execution_options(synchronize_session=False)
    )
    return True


def revoke_node_key(session: Session, host_id: int) -> bool:
    """Make the host's node key unusable, keeping its history: osqueryd gets
    ``node_invalid`` and enrolls again, into the same host. False when there was no
    such host."""
    host = lock_host(session, host_id)
    if host is None:
        return False
    # Never a SHA-256 hex digest, so no node key matches it; unique like a digest.
    host.node_key_hash = f"revoked:{secrets.token_hex(24)}"
    session.flush()
    return True
