"""One execution of a scheduled query, as ``launchQuery`` in osqueryd's scheduler.

Run the ``always`` decorators, run the SQL, then in one state transaction diff the rows
against the previous run and buffer the log lines (snapshot queries skip the diff and
log every run). ``removed: false`` drops removed rows from the log only; the counter
still counts that run. A failed query logs an error status line and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetctl.agent import differ
from fleetctl.agent.buffer import append_lines
from fleetctl.agent.config import ScheduledQuery
from fleetctl.agent.decorators import DecoratorRunner
from fleetctl.agent.engines import QueryEngine
from fleetctl.agent.errors import EngineError
from fleetctl.agent.flags import Flags
from fleetctl.agent.logformat import Header, diff_lines, snapshot_lines
from fleetctl.agent.state import StateDB
from fleetctl.agent.statuslog import StatusLog
from fleetctl.tables.runtime import ScheduledQueryStats


@dataclass
class RunReport:
    """What one execution did (for osquery_schedule and tests)."""

    name: str
    ok: bool
    lines: int = 0
    counter: int = 0
    error: str = ""
    rows: int = 0


@dataclass
class QueryRunner:
    engine: QueryEngine
    state: StateDB
    flags: Flags
    decorators: DecoratorRunner
    status: StatusLog
    identity: Callable[[], str]
    stats: dict[str, ScheduledQueryStats] = field(default_factory=dict)

    def run(self, query: ScheduledQuery) -> RunReport:
        self.decorators.run_always()
        started = time.monotonic()
        try:
            result = self.engine.query(query.query)
        except EngineError as exc:
            self._record(query, started, 0)
            self.status.error(f"Error executing scheduled query {query.name}: {exc.message}")
            return RunReport(query.name, ok=False, error=exc.message)
        now = int(time.time())
        epoch = self.flags.get_int("schedule_epoch")
        event_format = self.flags.get_bool("logger_event_type")
        notes: list[str] = []
        with self.state.transaction() as conn:
            if query.snapshot:
                counter = 0
                header = self._header(query.name, now, epoch, counter)
                rows = [differ.normalise(r) for r in result.rows]
                lines = snapshot_lines(
                    header, rows, self.flags.get_bool("logger_snapshot_event_type")
                )
            else:
                previous = conn.execute(
                    "SELECT query FROM query_state WHERE name = ?", (query.name,)
                ).fetchone()
                outcome = differ.apply(conn, query.name, query.query, epoch, result.rows, now)
                counter = outcome.counter
                if previous is None:
                    notes.append(f"Storing initial results for new scheduled query: {query.name}")
                elif outcome.new_epoch:
                    notes.append(f"New Epoch {epoch} for scheduled query {query.name}")
                elif previous[0] != query.query:
                    notes.append(f"Scheduled query has been updated: {query.name}")
                removed = outcome.removed if query.removed else []
                header = self._header(query.name, now, epoch, counter)
                lines = diff_lines(
                    header, outcome.added, removed, event_format, baseline=outcome.new_epoch
                )
            dropped = append_lines(
                conn, "result", lines, self.flags.get_int("logger_tls_max_linesize")
            )
        for note in notes:
            self.status.info(note)
        if dropped:
            self.status.warning(
                f"Dropped {dropped} result lines of {query.name} longer than "
                f"logger_tls_max_linesize"
            )
        self._record(query, started, sum(len(str(r)) for r in result.rows))
        return RunReport(
            query.name, ok=True, lines=len(lines) - dropped, counter=counter, rows=len(result.rows)
        )

    def _header(self, name: str, now: int, epoch: int, counter: int) -> Header:
        return Header(
            name=name,
            host_identifier=self.identity(),
            unix_time=now,
            epoch=epoch,
            counter=counter,
            numerics=self.flags.get_bool("logger_numerics"),
            decorations=self.decorators.current(),
            decorations_top_level=self.flags.get_bool("decorations_top_level"),
        )

    def _record(self, query: ScheduledQuery, started: float, size: int) -> None:
        stats = self.stats.get(query.name)
        if stats is None or stats.query != query.query or stats.interval != query.interval:
            stats = ScheduledQueryStats(query.name, query.query, query.interval)
            self.stats[query.name] = stats
        wall = int((time.monotonic() - started) * 1000)
        stats.executions += 1
        stats.last_executed = int(time.time())
        stats.wall_time_ms += wall
        stats.last_wall_time_ms = wall
        stats.output_size += size
