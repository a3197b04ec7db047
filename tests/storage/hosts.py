"""A host enrolled straight into the store, for tests of what the store does with it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage import hosts as host_store


def enrolled_host(
    session: Session, identifier: str = "h1", uuid: str = "u1", node_key_hash: str = "k" * 64
) -> int:
    """The id of a Linux host enrolled as ``identifier`` with hardware uuid ``uuid`` (a
    second host needs a node key of its own)."""
    host, *_ = host_store.enroll_host(
        session,
        host_identifier=identifier,
        platform_type="9",
        host_details={"system_info": {"uuid": uuid}},
        node_key_hash=node_key_hash,
        now=1,
    )
    return int(host.id)
