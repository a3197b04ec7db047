"""Sign-in limits counted in the store, on SQLite and PostgreSQL: several server states
on one store (a server and apps in this process, as workers and replicas are) share one
limit; a flood of failures for one user name from many addresses refuses those addresses,
not the user, and an address's own mistake costs it one window at most; the table of
failures stays bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from fleetctl.server.app import build_app
from fleetctl.server.local import store_client
from fleetctl.server.sign_in_limits import SignInLimits
from fleetctl.server.state import ServerState
from fleetctl.settings import Settings
from storage import sign_ins
from storage.engine import make_engine, make_sessionmaker, session_scope
from tests.conftest import RunningServer
from tests.server.test_tokens import admin_password

LOGIN = "/api/v1/admin/login"
WRONG = "not the password at all"


def sign_in(client: httpx.Client, user: str, password: str) -> int:
    return client.post(LOGIN, json={"user": user, "password": password}).status_code


def test_every_server_state_on_the_store_counts_the_same_failures(server: RunningServer) -> None:
    password = admin_password(server)
    remote = server.client()  # from 127.0.0.1
    with (
        store_client(server.settings.db_url, timeout=30) as one,  # from "local"
        store_client(server.settings.db_url, timeout=30) as other,  # another state, "local"
    ):
        assert [sign_in(remote, "admin", WRONG) for _ in range(3)] == [401] * 3
        assert [sign_in(one, "admin", WRONG) for _ in range(2)] == [401] * 2
        # Five failures for admin, three here and two there: each address that failed for
        # it is refused, in every state.
        assert sign_in(remote, "admin", password) == 429
        assert sign_in(other, "admin", password) == 429
        # Five failures from "local", two through one state and three through the other.
        assert [sign_in(other, "nobody", WRONG) for _ in range(3)] == [401] * 3
        refused = one.post(LOGIN, json={"user": "someone", "password": WRONG})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60


@pytest.fixture
def app_state(server: RunningServer) -> Iterator[ServerState]:
    """Another state on the server's store, whose app is called from any address."""
    state = ServerState.create(Settings(home=server.settings.home, db=server.settings.db_url))
    state.serves_hosts = False
    yield state
    state.close()


def from_addresses(state: ServerState, attempts: list[tuple[str, str]]) -> list[int]:
    """Sign in as admin with each (address, password), in turn; the answers' statuses."""
    app = build_app(state)

    async def attempt(address: str, password: str) -> int:
        transport = httpx.ASGITransport(app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet") as client:
            answer = await client.post(LOGIN, json={"user": "admin", "password": password})
            return answer.status_code

    async def all_in_turn() -> list[int]:
        return [await attempt(address, password) for address, password in attempts]

    return asyncio.run(all_in_turn())


def test_a_flood_for_one_name_refuses_the_flooding_addresses_not_the_user(
    server: RunningServer, app_state: ServerState
) -> None:
    password = admin_password(server)
    flood = [(f"203.0.113.{n}", WRONG) for n in range(1, 9)]
    assert from_addresses(app_state, flood) == [401] * 8
    assert from_addresses(app_state, [("198.51.100.7", password)]) == [200]
    assert from_addresses(app_state, [("203.0.113.1", password), ("203.0.113.9", WRONG)]) == [
        429,
        401,
    ]


def test_the_lockout_of_a_name_ends_within_a_window_while_the_flood_goes_on(db_url: str) -> None:
    limits = SignInLimits(allowed=5, window=60)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    t = 1_000_000

    def failed(address: str, user: str | None, second: int) -> None:
        with session_scope(sessions) as session:
            limits.failed(session, address, user, t + second)

    def wait(address: str, user: str | None, second: int) -> int:
        with session_scope(sessions) as session:
            return limits.retry_after(session, address, user, t + second)

    def flooder(second: int) -> str:
        return f"203.0.113.{second}"

    def flood(first: int, last: int) -> None:
        """A guess for ana every 2 s, each from an address of its own."""
        for second in range(first, last + 1, 2):
            failed(flooder(second), "ana", second)

    ana = "198.51.100.7"
    flood(0, 10)
    assert wait(ana, "ana", 10) == 0  # her address never failed for her
    assert wait(flooder(4), "ana", 10) == 52  # till the name's fifth newest leaves the window
    assert wait(flooder(4), "bob", 10) == 0  # another name is not held against it
    flood(12, 64)
    assert wait(flooder(4), "ana", 64) == 0  # its own guess left the window
    flood(66, 100)
    failed(ana, "ana", 100)  # her own mistake, mid-flood
    assert wait(ana, "ana", 101) == 53
    flood(102, 158)
    assert wait(ana, "ana", 159) == 1  # the name is still held: her mistake's window ends
    assert wait(ana, "ana", 160) == 0

    for second in range(5):  # five from one address, whatever the names
        failed("192.0.2.1", None if second % 2 else f"user-{second}", 300 + second)
    assert wait("192.0.2.1", "carol", 305) == 55  # until the first leaves the window
    assert wait("192.0.2.1", None, 360) == 0
    engine.dispose()


def test_the_store_keeps_a_bounded_number_of_failures(db_url: str) -> None:
    engine = make_engine(db_url)
    with session_scope(make_sessionmaker(engine)) as session:
        for n in range(30):
            sign_ins.record_failure(session, f"a{n}", "ana", 5000 + n, forget_before=0, keep=10)
        assert len(sign_ins.failure_times(session, 0, 100)) == 10
        sign_ins.record_failure(session, "late", None, 5100, forget_before=5025, keep=10)
        assert sign_ins.failure_times(session, 0, 100) == [5100, 5029, 5028, 5027, 5026]
    engine.dispose()
