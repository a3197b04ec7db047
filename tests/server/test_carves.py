"""File carves over real HTTPS on SQLite and PostgreSQL: within the declared size, or
refused; assembled when complete; expired (blocks deleted) when their blocks stop."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from fleetctl.cli import main
from fleetctl.server.carves import max_block_size
from storage.models import Carve, CarveBlock
from tests.conftest import RunningServer

MiB = 1024 * 1024
ZSTD = b"\x28\xb5\x2f\xfd"


@pytest.fixture
def node(server: RunningServer) -> Any:
    node = server.node()
    assert node.enroll()["node_key"]
    return node


def begin(node: Any, carve_size: int, block_size: int, block_count: int) -> dict[str, Any]:
    answer: dict[str, Any] = node.call(
        "/carve/begin",
        {
            "block_count": block_count,
            "block_size": block_size,
            "carve_size": carve_size,
            "carve_id": "c-1",
            "request_id": "r-1",
        },
    )
    return answer


def block(node: Any, session_id: str, block_id: int, data: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = node.post(
        "/carve/block",
        {
            "block_id": block_id,
            "session_id": session_id,
            "request_id": "r-1",
            "data": base64.b64encode(data).decode(),
        },
    )
    return answer


def carves_cli() -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["carves", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


def test_a_complete_carve_is_assembled(server: RunningServer, node: Any) -> None:
    payload = ZSTD + bytes(range(256)) * 70  # 17,924 bytes
    size = 8192
    blocks = [payload[i : i + size] for i in range(0, len(payload), size)]
    session_id = begin(node, len(payload), size, len(blocks))["session_id"]
    assert carves_cli()[0]["state"] == "receiving"
    for i, data in enumerate(blocks):
        assert block(node, session_id, i, data) == {"node_invalid": False}
    assert block(node, session_id, 2, blocks[2]) == {"node_invalid": False}  # a resend

    [(archive, compression, received)] = server.query(
        select(Carve.archive, Carve.compression, Carve.bytes_received)
    )
    assert archive == payload and compression == "zstd" and received == len(payload)
    assert server.query(select(func.count()).select_from(CarveBlock)) == [(0,)]
    [listed] = carves_cli()
    assert listed["state"] == "complete" and listed["blocks"] == "3/3"
    assert listed["received"] == listed["size"] == len(payload)


@pytest.mark.parametrize(
    ("carve_size", "block_size", "block_count", "why"),
    [
        (10, 4 * MiB, 1_000_000, "do not fit a carve of 10 bytes"),
        (10_000, 1_000, 9, "do not fit"),  # too few blocks to hold it
        (10_000, 1_000, 12, "do not fit"),  # more than one block too many
        (512 * MiB + 1, 4 * MiB, 129, "exceeds the server's"),
        (20 * MiB, 20 * MiB, 1, "a block must fit a request"),
        (100, 0, 1, "block_size must be"),
        (0, 100, 0, "do not fit"),
    ],
)
def test_a_carve_beyond_its_limits_is_refused_at_begin(
    server: RunningServer,
    node: Any,
    carve_size: int,
    block_size: int,
    block_count: int,
    why: str,
) -> None:
    answer = begin(node, carve_size, block_size, block_count)
    assert why in answer["error"] and "session_id" not in answer
    assert server.query(select(func.count()).select_from(Carve)) == [(0,)]


def test_a_hosts_unfinished_carves_together_stay_within_the_cap(
    server: RunningServer, node: Any
) -> None:
    cap = server.settings.max_carve
    first = begin(node, cap // 2, 4 * MiB, -(-(cap // 2) // (4 * MiB)))
    assert "session_id" in first
    second = begin(node, cap // 2 + 1, 4 * MiB, -(-(cap // 2 + 1) // (4 * MiB)))
    assert "unfinished carves already announce" in second["error"]
    assert begin(node, cap // 2, 4 * MiB, -(-(cap // 2) // (4 * MiB)))["session_id"]
    other = server.node("other-host", "uuid-other")
    other.enroll()
    assert begin(other, cap, 4 * MiB, cap // (4 * MiB))["session_id"]  # per host


def test_the_largest_block_fits_the_request_body_limit(server: RunningServer) -> None:
    largest = max_block_size(server.settings.max_body)
    body = json.dumps(
        {
            "block_id": 0,
            "session_id": "x" * 32,
            "request_id": "r" * 36,
            "data": base64.b64encode(bytes(largest)).decode(),
        }
    )
    assert len(body) <= server.settings.max_body


def test_blocks_beyond_the_declared_size_are_refused(server: RunningServer, node: Any) -> None:
    session_id = begin(node, carve_size=10, block_size=8, block_count=2)["session_id"]
    too_big = block(node, session_id, 0, bytes(9))
    assert "larger than the announced block_size" in too_big["error"]
    assert block(node, session_id, 0, b"A" * 8) == {"node_invalid": False}
    beyond = block(node, session_id, 1, b"B" * 8)
    assert "past its declared carve_size of 10 bytes" in beyond["error"]
    out_of_range = block(node, session_id, 2, b"C")
    assert "out of range" in out_of_range["error"]
    assert server.query(select(Carve.bytes_received, Carve.completed_at)) == [(8, None)]

    assert block(node, session_id, 1, b"BB") == {"node_invalid": False}
    [(archive, received)] = server.query(select(Carve.archive, Carve.bytes_received))
    assert archive == b"A" * 8 + b"BB" and received == 10


def test_a_carve_whose_blocks_stop_is_expired_and_its_blocks_deleted(
    server: RunningServer, node: Any
) -> None:
    session_id = begin(node, carve_size=20, block_size=8, block_count=3)["session_id"]
    assert block(node, session_id, 0, b"A" * 8) == {"node_invalid": False}
    [(last_block,)] = server.query(select(Carve.updated_at))
    state = server.thread.state
    timeout = server.settings.carve_timeout

    assert state.expire_carves(last_block + timeout - 1) == 0
    assert server.query(select(func.count()).select_from(CarveBlock)) == [(1,)]
    assert state.expire_carves(last_block + timeout) == 1

    assert server.query(select(func.count()).select_from(CarveBlock)) == [(0,)]
    assert server.query(select(Carve.expired_at)) == [(last_block + timeout,)]
    late = block(node, session_id, 1, b"B" * 8)
    assert "carve expired" in late["error"]
    [listed] = carves_cli()
    assert listed["state"] == "expired" and listed["blocks"] == "1/3"
    assert state.expire_carves(last_block + 2 * timeout) == 0  # expired once


def test_an_unknown_session_is_refused(node: Any) -> None:
    assert "unknown carve session_id" in block(node, "nope", 0, b"x")["error"]
