"""File carves and their blocks (session passed in)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from storage.base import in_chunks
from storage.models import Carve as Carve  # the record type carves are returned as
from storage.models import CarveBlock, Host


def create_carve(
    session: Session,
    *,
    host_id: int,
    session_id: str,
    carve_id: str,
    request_id: str,
    block_count: int,
    block_size: int,
    carve_size: int,
    now: int,
) -> Carve:
    carve = Carve(
        host_id=host_id,
        session_id=session_id,
        carve_id=carve_id,
        request_id=request_id,
        block_count=block_count,
        block_size=block_size,
        carve_size=carve_size,
        blocks_received=0,
        bytes_received=0,
        created_at=now,
    )
    session.add(carve)
    return carve


def unfinished_bytes(session: Session, host_id: int) -> int:
    """Bytes a host's carves still receiving have announced."""
    total = session.scalar(
        select(func.coalesce(func.sum(Carve.carve_size), 0)).where(
            Carve.host_id == host_id, Carve.completed_at.is_(None), Carve.expired_at.is_(None)
        )
    )
    return int(total or 0)


def locked_carve(session: Session, session_id: str) -> Carve | None:
    """The carve of a session, locked for the rest of the transaction, so that blocks of
    one carve (and its expiry) are applied one at a time."""
    return session.scalars(
        select(Carve).where(Carve.session_id == session_id).with_for_update()
    ).first()


def has_block(session: Session, carve_id: int, block_id: int) -> bool:
    return bool(
        session.scalar(
            select(exists().where(CarveBlock.carve_id == carve_id, CarveBlock.block_id == block_id))
        )
    )


def add_block(session: Session, carve: Carve, block_id: int, data: bytes, now: int) -> None:
    """Store one block and count it (blocks and bytes) on its locked carve."""
    session.add(CarveBlock(carve_id=carve.id, block_id=block_id, data=data))
    carve.blocks_received += 1
    carve.bytes_received += len(data)
    carve.updated_at = now


def archive_of(session: Session, carve_id: int) -> bytes:
    """The carve's blocks joined in block order."""
    session.flush()
    return b"".join(
        session.scalars(
            select(CarveBlock.data)
            .where(CarveBlock.carve_id == carve_id)
            .order_by(CarveBlock.block_id)
        )
    )


def complete(session: Session, carve: Carve, archive: bytes, compression: str, now: int) -> None:
    """Keep the assembled archive and drop the blocks it was made of."""
    carve.archive = archive
    carve.compression = compression
    carve.completed_at = now
    session.execute(delete(CarveBlock).where(CarveBlock.carve_id == carve.id))


def expire_stalled(session: Session, now: int, timeout: int) -> list[int]:
    """Carves still receiving whose last block (or start) is ``timeout`` seconds old:
    mark them expired and delete their blocks; their ids.

    The carves are locked first, so a block arriving meanwhile either lands before the
    expiry (and the carve is no longer stalled) or finds the carve expired.
    """
    stalled = list(
        session.scalars(
            select(Carve.id)
            .where(
                Carve.completed_at.is_(None),
                Carve.expired_at.is_(None),
                func.coalesce(Carve.updated_at, Carve.created_at) <= now - timeout,
            )
            .order_by(Carve.id)
            .with_for_update()
        )
    )
    for chunk in in_chunks(stalled):
        session.execute(delete(CarveBlock).where(CarveBlock.carve_id.in_(chunk)))
        session.execute(
            update(Carve)
            .where(Carve.id.in_(chunk))
            .values(expired_at=now)
            .execution_options(synchronize_session=False)
        )
    return stalled


@dataclass(frozen=True)
class CarveSummary:
    """A carve as the admin API lists it (no archive bytes)."""

    session_id: str
    carve_id: str
    host: str
    carve_size: int
    bytes_received: int
    block_count: int
    blocks_received: int
    compression: str
    created_at: int
    updated_at: int | None
    completed_at: int | None
    expired_at: int | None

    @property
    def state(self) -> str:
        if self.completed_at is not None:
            return "complete"
        return "expired" if self.expired_at is not None else "receiving"


def list_carves(session: Session) -> list[CarveSummary]:
    rows = session.execute(
        select(
            Carve.session_id,
            Carve.carve_id,
            Host.host_identifier.label("host"),
            Carve.carve_size,
            Carve.bytes_received,
            Carve.block_count,
            Carve.blocks_received,
            Carve.compression,
            Carve.created_at,
            Carve.updated_at,
            Carve.completed_at,
            Carve.expired_at,
        )
        .join(Host, Host.id == Carve.host_id)
        .order_by(Carve.id)
    )
    return [CarveSummary(**row._mapping) for row in rows]
