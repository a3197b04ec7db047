"""What the judge knows of one host: its enrollment, its query streams, the current rows
of its telemetry-health queries, column fills of its lineage and pipes, its data-loss
gaps and its last purple-team validations. Read from the store by
``fleetctl.coverage.gather``; judged by ``fleetctl.coverage.judge`` without any I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetctl.coverage.items import QueryKey
from fleetctl.timeutil import iso
from storage.coverage import Fill, Gap, QueryHistory

Row = Mapping[str, str]


@dataclass(frozen=True)
class ValidationRun:
    """One outcome of one scenario on a machine (``fleetctl validate``), named as the
    machine enrolled (``host_uuid``, ``host_identifier``)."""

    scenario: str
    name: str
    kind: str  # attack | benign
    result: str  # detected | missed | quiet | false positive | skipped | error
    seconds: float | None
    agent: str  # stock | extension
    ran_at: int
    host_uuid: str = ""
    host_identifier: str = ""

    @classmethod
    def of(cls, record: Any) -> ValidationRun:
        """The run a stored validation record (``storage.validations``) holds."""
        return cls(
            record.scenario,
            record.name,
            record.kind,
            record.result,
            record.seconds,
            record.agent,
            record.ran_at,
            record.host_uuid,
            record.host_identifier,
        )

    def json(self) -> dict[str, Any]:
        """The outcome as the admin API says it (the machine left to the caller)."""
        return {
            "scenario": self.scenario,
            "name": self.name,
            "kind": self.kind,
            "result": self.result,
            "seconds": self.seconds,
            "agent": self.agent,
            "ran_at": iso(self.ran_at),
        }


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
