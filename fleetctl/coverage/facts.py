"""What the judge knows of one host: its enrollment, its query streams, the current rows
of its telemetry-health queries, column fills of its lineage and pipes, its data-loss
gaps and its last purple-team validations. Read from the store by
``fleetctl.coverage.gather``; judged by ``fleetctl.coverage.judge`` without any I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fleetctl.coverage.items import QueryKey
from storage.coverage import Fill, Gap, QueryHistory

Row = Mapping[str, str]


@dataclass(frozen=True)
class ValidationRun:
    """The last outcome of one scenario on the host (``fleetctl validate``)."""

    scenario: str
    name: str
    kind: str  # attack | benign
    result: str  # detected | missed | quiet | false positive | skipped | error
    seconds: float | None
    agent: str  # stock | extension
    ran_at: int


@dataclass(frozen=True)
class HostFacts:
    id: int
    identifier: str
    hostname: str
    uuid: str
    platform: str  # linux | darwin | windows
    os: str
    osquery_version: str
    last_seen: int
    queries: Mapping[QueryKey, QueryHistory] = field(default_factory=dict)
    rows: Mapping[QueryKey, Sequence[Row]] = field(default_factory=dict)
    fills: Mapping[QueryKey, Fill] = field(default_factory=dict)
    gaps: tuple[Gap, ...] = ()
    validations: tuple[ValidationRun, ...] = ()

    def history(self, key: QueryKey) -> QueryHistory | None:
        return self.queries.get(key)

    def current(self, key: QueryKey) -> Sequence[Row] | None:
        """The query's rows now; None when the host never reported the query."""
        if key in self.rows:
            return self.rows[key]
        return [] if key in self.queries else None
