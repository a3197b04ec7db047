"""A host's last delivery: which leading lines of a batch the previous accepted batch
already held, and the batch's digests kept for the next one in the same transaction
(one statement on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage import logs as log_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from tests.storage.hosts import enrolled_host


def digests(*lines: int) -> list[bytes]:
    return [line.to_bytes(log_store.DIGEST_BYTES, "big") for line in lines]


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_a_batch_skips_what_the_last_accepted_batch_held(
    sessions: sessionmaker[Session],
) -> None:
    with session_scope(sessions) as session:
        host_id = enrolled_host(session)

    def deliver(batch: list[bytes], log_type: str = "result") -> int:
        with session_scope(sessions) as session:
            return log_store.delivered(session, host_id, log_type, batch, 10)

    assert deliver(digests(1, 2, 3)) == 0  # nothing delivered before
    assert deliver(digests(1, 2, 3)) == 3  # resent whole: a lost reply
    assert deliver(digests(1, 2, 3, 4, 5)) == 3  # resent with more lines behind it
    assert deliver(digests(1, 2)) == 2  # the start of the last batch
    assert deliver(digests(1, 2)) == 2  # and that one is now the last
    assert deliver(digests(7)) == 0
    assert deliver(digests(7), "status") == 0  # each log type keeps its own
    assert deliver([]) == 0  # an empty batch skips nothing and keeps nothing
    assert deliver(digests(7)) == 1


def test_a_rolled_back_batch_leaves_the_last_accepted_one(
    sessions: sessionmaker[Session],
) -> None:
    with session_scope(sessions) as session:
        host_id = enrolled_host(session)
        assert log_store.delivered(session, host_id, "result", digests(1, 2), 10) == 0
    with pytest.raises(RuntimeError), session_scope(sessions) as session:
        assert log_store.delivered(session, host_id, "result", digests(3), 11) == 0
        raise RuntimeError("the batch failed after its digests were read")
    with session_scope(sessions) as session:
        assert log_store.delivered(session, host_id, "result", digests(1, 2), 12) == 2
