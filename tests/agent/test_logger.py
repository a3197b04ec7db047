"""The TLS logger: batches of at most 1,024 lines, results and statuses apart, backoff."""

from __future__ import annotations

from typing import Any

from fleetctl.agent.buffer import Backoff
from tests.agent.conftest import AgentFactory, FleetServer, RecordingTransport, wait_for

ROWS = 2500
COUNT_SQL = (
    f"WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < {ROWS}) "
    "SELECT x FROM n"
)


def test_a_large_baseline_goes_out_in_batches_of_at_most_1024_lines(
    fleet: FleetServer, served_config: dict[str, Any], make_agent: AgentFactory
) -> None:
    served_config["schedule"] = {"numbers": {"query": COUNT_SQL, "interval": 1}}
    wire = RecordingTransport(fleet.ca)
    agent = make_agent(fleet, http_transport=wire)
    agent.start()
    wait_for(lambda: len(fleet.rows("numbers")) == ROWS, what="every row stored")
    agent.stop()
    results = wire.logs("result")
    sizes = [len(e.body["data"]) for e in results]
    assert max(sizes) <= 1024 and sum(sizes) == ROWS and len(sizes) >= 3
    assert all(e.body["log_type"] in ("result", "status") for e in wire.logs("status"))
    for exchange in wire.logs("result") + wire.logs("status"):
        assert len(exchange.body["data"]) <= 1024
    line = results[0].body["data"][0]
    assert set(line) == {
        "name",
        "hostIdentifier",
        "calendarTime",
        "unixTime",
        "epoch",
        "counter",
        "numerics",
        "decorations",
        "columns",
        "action",
    }
    assert line["counter"] == 0 and line["numerics"] is False and line["action"] == "added"
    assert line["calendarTime"].endswith(" UTC") and isinstance(line["unixTime"], int)
    statuses = [line for e in wire.logs("status") for line in e.body["data"]]
    assert any(
        "Storing initial results for new scheduled query: numbers" in s["message"] for s in statuses
    )


def test_backoff_grows_with_the_square_of_failures_up_to_the_cap() -> None:
    backoff = Backoff()
    waits = []
    for _ in range(5):
        backoff.failed(now=100.0, period=4, cap=60)
        waits.append(backoff.until - 100.0)
    assert waits == [4, 16, 36, 60, 60]
    assert not backoff.ready(150.0) and backoff.ready(160.0)
    backoff.succeeded()
    assert backoff.ready(0.0)
    backoff.failed(now=0.0, period=4, cap=0)  # 0 disables backoff
    assert backoff.ready(0.0)
