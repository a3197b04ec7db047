"""Judge one host's telemetry, item by item: ``ok``, ``partial`` or ``missing``, each
with the reason in words an admin can act on.

Pure: everything comes in as ``HostFacts`` and the time ``now``. Thresholds are the
ones an investigation needs: most running processes with their parent (80%) and
grandparent (60%) resolved, command line and binary path (80%); a snapshot query is
stale after three of its intervals (plus two minutes of delivery slack).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fleetctl.coverage.facts import HostFacts, Row
from fleetctl.coverage.items import (
    BY_PLATFORM,
    DENYLISTED,
    EVENT_FLAGS,
    EVENT_PUBLISHERS,
    EXTENSION_TABLES,
    MISSING,
    OK,
    OSQUERY_INFO,
    PARTIAL,
    SCHEDULE_HEALTH,
    SNAPSHOTS,
    STATUSES,
    Platform,
    QueryKey,
    sources,
)
from fleetctl.timeutil import iso
from storage.runs import split_query_name

PARENT_SHARE, GRANDPARENT_SHARE, FILLED_SHARE = 0.8, 0.6, 0.8
STALE_INTERVALS, SLACK = 3, 120
DEFAULT_INTERVAL = 3600  # osquery's schedule_default_interval
PASSED = ("detected", "quiet", "skipped")
EXTENSION_TABLE_NAMES = ("process_stdio", "unix_socket_peers")


@dataclass(frozen=True)
class Cell:
    status: str
    reason: str

    def json(self) -> dict[str, str]:
        return {"status": self.status, "reason": self.reason}


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=STATUSES.index, default=OK)


def span(seconds: float) -> str:
    """A duration as people say it: 40 s, 12 min, 5 h, 41 d."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def named(key: QueryKey) -> str:
    pack, query = key
    return f"{pack}/{query}" if pack else query


def share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True)
class HostJudgement:
    cells: dict[str, Cell]
    retention_seconds: int | None  # continuous history of the thinnest source
    retention_short: bool  # below what the admin asked for
    validation: Cell


class Judge:
    """The judgement of one host's facts at ``now`` against ``retention`` seconds."""

    def __init__(self, facts: HostFacts, now: int, retention: int) -> None:
        self.facts = facts
        self.now = now
        self.retention = retention
        self.platform: Platform = BY_PLATFORM[facts.platform]
        packs = {k[0] for k in facts.queries if k[0]} | {k[0] for k in sources(self.platform)}
        self._packs = sorted(p for p in packs if p)
        self.schedule = self._schedule()
        self.denied = self._denied()

    # --- facts, read once -------------------------------------------------------

    def key(self, logged: str) -> QueryKey:
        q = split_query_name(logged, self._packs)
        return (q.pack, q.query)

    def _schedule(self) -> dict[QueryKey, Row]:
        return {self.key(r.get("name", "")): r for r in self.facts.current(SCHEDULE_HEALTH) or []}

    def _denied(self) -> set[QueryKey]:
        listed = {k for k, r in self.schedule.items() if r.get("denylisted") == "1"}
        return listed | {self.key(r.get("name", "")) for r in self.facts.current(DENYLISTED) or []}

    def rows(self, key: QueryKey) -> int:
        history = self.facts.history(key)
        return history.open_rows if history else 0

    def ran(self, key: QueryKey) -> bool:
        """The host reported rows of the query, or its schedule says it executed."""
        row = self.schedule.get(key)
        executed = row is not None and row.get("executions", "0") not in ("", "0")
        return self.facts.history(key) is not None or executed

    def interval(self, key: QueryKey) -> int:
        text = (self.schedule.get(key) or {}).get("interval", "")
        return int(text) if text.isdigit() and int(text) > 0 else DEFAULT_INTERVAL

    def daemon_uptime(self) -> int | None:
        """Seconds osqueryd had been running at its last osquery_info report."""
        info = (self.facts.current(OSQUERY_INFO) or [{}])[0]
        start, clock = info.get("start_time", ""), info.get("unix_time", "")
        return int(clock) - int(start) if start.isdigit() and clock.isdigit() else None

    def flags(self) -> dict[str, str] | None:
        rows = self.facts.current(EVENT_FLAGS)
        return None if rows is None else {r.get("name", ""): r.get("value", "") for r in rows}

    def event_row(self, kind: str, name: str) -> Row | None:
        rows = self.facts.current(EVENT_PUBLISHERS) or []
        return next((r for r in rows if r.get("type") == kind and r.get("name") == name), None)

    def fill(self, key: QueryKey, column: str) -> tuple[int, int]:
        """(rows present now, rows whose ``column`` says something)."""
        found = self.facts.fills.get(key)
        return (0, 0) if found is None else (found.rows, found.filled.get(column, 0))

    def shares(self, key: QueryKey, *columns: str) -> tuple[int, list[float]]:
        """Rows present now, and the share of them in which each column says something."""
        rows = self.fill(key, columns[0])[0]
        return rows, [share(self.fill(key, c)[1], rows) for c in columns]

    # --- the items ----------------------------------------------------------------

    def judge(self) -> HostJudgement:
        events = self.process_events()
        retention, reach = self.retention_cell()
        cells = {
            "process_events": events,
            "lineage": self.lineage(),
            "command_lines": self.command_lines(events),
            "ipc": self.ipc(events),
            "context": self.context(events),
            "freshness": self.freshness(),
            "schedule": self.schedule_health(),
            "retention": retention,
        }
        short = reach is not None and reach < self.retention
        return HostJudgement(cells, reach, short, self.validation())

    def process_events(self) -> Cell:
        source = self.platform.events
        flags = self.flags()
        off = [
            f"--{f.name}={flags[f.name]}"
            + (" (osqueryd's default)" if flags[f.name] == f.default else "")
            for f in source.flags
            if flags is not None and f.name in flags and flags[f.name].lower() != f.needed
        ]
        needed = ", ".join(f"--{f.name}={f.needed}" for f in source.flags)
        if off:
            return Cell(
                MISSING, f"{source.table} disabled by flag {', '.join(off)}; it needs {needed}"
            )
        publisher = self.event_row("publisher", source.publisher)
        if flags is None and self.facts.current(EVENT_PUBLISHERS) is None:
            return Cell(
                MISSING,
                "the host reported neither its flags nor its event publishers "
                "(telemetry-health/event_flags, event_publishers)",
            )
        if publisher is None or publisher.get("active") != "1":
            state = "not registered" if publisher is None else "inactive"
            unreported = flags is not None and not any(f.name in flags for f in source.flags)
            who = "this agent reports none of its flags; osqueryd " if unreported else ""
            return Cell(
                MISSING,
                f"{source.table}: publisher {source.publisher} {state} in osquery_events "
                f"({who}needs {needed})",
            )
        subscriber = self.event_row("subscriber", source.table)
        count = (subscriber or {}).get("events", "0")
        if source.query in self.denied:
            return Cell(PARTIAL, f"{named(source.query)} is denylisted by the watchdog")
        if not self.ran(source.query):
            return Cell(
                PARTIAL, f"{source.table} is on, but {named(source.query)} has not run on this host"
            )
        if not count.isdigit() or count == "0":
            return Cell(
                PARTIAL,
                f"publisher {source.publisher} active, but {source.table} has received no "
                "events since osqueryd started",
            )
        return Cell(
            OK,
            f"{source.table}: {count} events since osqueryd started (publisher "
            f"{source.publisher} active), read by {named(source.query)}"
            + (f" ({source.note})" if source.note else ""),
        )

    def lineage(self) -> Cell:
        key = self.platform.lineage
        rows, (p, g) = self.shares(key, "parent_name", "grandparent_name")
        if rows == 0:
            return Cell(MISSING, self._no_rows(key, "processes"))
        said = f"{rows} processes now, parent resolved for {p:.0%}, grandparent for {g:.0%}"
        if key in self.denied:
            return Cell(PARTIAL, f"{said}; but {named(key)} is denylisted by the watchdog")
        if p < PARENT_SHARE or g < GRANDPARENT_SHARE:
            return Cell(PARTIAL, f"{said} (parents exit before the snapshot, or pids reused)")
        return Cell(OK, f"{said} ({named(key)} every {span(self.interval(key))})")

    def _no_rows(self, key: QueryKey, what: str) -> str:
        if key in self.denied:
            return f"no {what}: {named(key)} is denylisted by the watchdog"
        if self.ran(key):
            return f"no {what} now: {named(key)} runs but returns no rows"
        return f"no {what}: {named(key)} never reported from this host"

    def command_lines(self, events: Cell) -> Cell:
        key = self.platform.lineage
        rows, (c, b) = self.shares(key, "cmdline", "path")
        if rows == 0:
            return Cell(MISSING, self._no_rows(key, "command lines"))
        said = f"command line for {c:.0%} and binary path for {b:.0%} of {rows} running processes"
        if c < FILLED_SHARE or b < FILLED_SHARE:
            return Cell(PARTIAL, said)
        if events.status != OK:
            return Cell(
                PARTIAL,
                f"{said}; short-lived execs between two snapshots are not seen "
                "(process creation events are not ok)",
            )
        return Cell(OK, f"{said}, and every exec from {self.platform.events.table}")

    def ipc(self, events: Cell) -> Cell:
        have = [f"{what} ({self.rows(key)})" for key, what in self.platform.ipc if self.rows(key)]
        name = self.platform.name
        if name == "windows":
            return self._windows_pipes(have)
        first = {key: self.rows(key) > 0 for key, _ in self.platform.ipc}
        if not any(first.values()):
            tried = ", ".join(named(k) for k, _ in self.platform.ipc[:3])
            return Cell(MISSING, f"no IPC rows at all ({tried} ...)")
        lacking = []
        sockets = (
            first[("ipc-telemetry", "unix_sockets")] or first[("ipc-telemetry", "unix_listeners")]
        )
        if not sockets:
            lacking.append("no unix sockets (ipc-telemetry/unix_sockets)")
        if name == "linux":
            if not first[("ipc-telemetry", "pipe_partners")]:
                lacking.append("no pipes with partners (ipc-telemetry/pipe_partners)")
            lacking += self._linux_peers(first)
        else:
            if events.status != OK:
                lacking.append(
                    "no XPC attribution: responsible_pid comes from es_process_events, "
                    "which is not ok"
                )
            if not self.ran(("ipc-telemetry", "launchd_mach_services")):
                lacking.append("launchd Mach services not reported")
        note = "; osquery has no pipe or XPC table on macOS" if name == "darwin" else ""
        said = ", ".join(have)
        if lacking:
            return Cell(PARTIAL, f"{said}; " + "; ".join(lacking) + note)
        return Cell(OK, said + note)

    def _linux_peers(self, first: dict[QueryKey, bool]) -> list[str]:
        if (
            first[("ipc-telemetry-extension", "process_stdio")]
            or first[("ipc-telemetry-extension", "unix_socket_peers")]
        ):
            return []
        loaded = {r.get("table_name") for r in self.facts.current(EXTENSION_TABLES) or []}
        if loaded & set(EXTENSION_TABLE_NAMES):
            return ["the fleetctl extension is loaded but its tables sent no rows"]
        audit = (
            "; audit socket_events give connect paths only"
            if first[("ipc-telemetry", "unix_socket_events")]
            else ""
        )
        return [
            "no unix socket peers: stock osqueryd has none (no table gives a unix socket's "
            "peer, and a client end has no path); load the fleetctl extension for "
            "process_stdio and unix_socket_peers" + audit
        ]

    def _windows_pipes(self, have: list[str]) -> Cell:
        key = self.platform.ipc[0][0]
        rows, servers = self.fill(key, "pid")
        if rows == 0 and not have:
            return Cell(MISSING, self._no_rows(key, "named pipes"))
        known = share(servers, rows)
        said = f"{rows} named pipes, {known:.0%} with their server process"
        if rows and known < 0.5:
            return Cell(
                PARTIAL,
                f"{said}: osqueryd could not connect to most (busy instances or access denied)",
            )
        return Cell(OK, f"{said}; osquery reports a pipe's server, never its clients")

    def context(self, events: Cell) -> Cell:
        f = self.facts
        host = all((f.hostname, f.uuid, f.os))
        lineage_rows = self.fill(self.platform.lineage, "parent")[0]
        if lineage_rows == 0 and events.status != OK:
            return Cell(MISSING, "no process rows or events to attach a user or session to")
        lacking = [] if host else ["enrollment lacks hostname, uuid or OS"]
        table = self.platform.events.table
        if self.platform.user_column is None:
            said = f"user and session from {table}"
            if events.status != OK:
                said = "no user or session"
                lacking.append(
                    f"they come only from {table} (username, session_id), which is not ok; "
                    "the lineage snapshot has no user column"
                )
        else:
            _, (users,) = self.shares(self.platform.lineage, self.platform.user_column)
            user = users >= FILLED_SHARE or events.status == OK
            session_ok = (
                self.platform.sessions is not None and self.ran(self.platform.sessions)
            ) or (self.platform.name == "darwin" and events.status == OK)
            if not user:
                lacking.append("no user on most processes")
            if not session_ok:
                lacking.append("login sessions not reported (ipc-telemetry/logged_in_users)")
            said = "user per process, login sessions"
        said += f", host {f.hostname or f.identifier} ({f.os or 'unknown OS'})"
        if lacking:
            return Cell(PARTIAL, f"{said}; " + "; ".join(lacking))
        return Cell(OK, said)

    def freshness(self) -> Cell:
        seen = f"host last seen {span(self.now - self.facts.last_seen)} ago"
        keys = [
            k for k in (self.platform.lineage, *(k for k, _ in self.platform.ipc), OSQUERY_INFO)
        ]
        reported = [
            (k, h) for k in keys if k in SNAPSHOTS and (h := self.facts.history(k)) is not None
        ]
        if not reported:
            return Cell(MISSING, f"no snapshot result yet; {seen}")
        stale, newest = [], []
        for key, history in reported:
            age = self.now - history.last_result
            every = self.interval(key)
            if age > STALE_INTERVALS * every + SLACK:
                stale.append(f"{named(key)} last {span(age)} ago (every {span(every)})")
            else:
                newest.append(f"{key[1]} {span(age)} ago")
        if stale:
            return Cell(PARTIAL, "stale: " + "; ".join(stale) + f"; {seen}")
        return Cell(OK, "last results: " + ", ".join(newest) + f"; {seen}")

    def schedule_health(self) -> Cell:
        if self.facts.current(SCHEDULE_HEALTH) is None:
            return Cell(
                MISSING, "no osquery_schedule report yet (telemetry-health/schedule_health)"
            )
        mine = set(sources(self.platform))
        blind = sorted(named(k) for k in self.denied if k in mine)
        other = sorted(named(k) for k in self.denied if k not in mine)
        overdue = []
        up = self.daemon_uptime()
        for key, row in self.schedule.items():
            runs, since = row.get("executions", "0"), row.get("seconds_since_last_run", "")
            late = STALE_INTERVALS * self.interval(key) + SLACK
            every = span(self.interval(key))
            if runs in ("", "0") and up is not None and up > late:
                overdue.append(f"{named(key)} never ran in {span(up)} (every {every})")
            elif runs not in ("", "0") and since.isdigit() and int(since) > late:
                overdue.append(f"{named(key)} last ran {span(int(since))} ago (every {every})")
        if blind:
            return Cell(MISSING, "denylisted by the watchdog: " + ", ".join(blind + other))
        if other or overdue:
            said = (["denylisted: " + ", ".join(other)] if other else []) + overdue
            return Cell(PARTIAL, "; ".join(said))
        executed = sum(
            1 for r in self.schedule.values() if r.get("executions", "0") not in ("", "0")
        )
        return Cell(
            OK,
            f"{executed} of {len(self.schedule)} scheduled queries ran; none denylisted or overdue",
        )

    def retention_cell(self) -> tuple[Cell, int | None]:
        """How far back this host's history reaches without a break, on the thinnest of
        its process and IPC streams. An event query's oldest row is its oldest event,
        not the start of its history, so it counts only through its gaps."""
        event_query = self.platform.events.query
        reaches = []
        for key in sources(self.platform):
            history = self.facts.history(key)
            if history is None or history.first_row is None:
                continue
            start, cut = (self.now if key == event_query else history.first_row), None
            for gap in self.facts.gaps:
                if (gap.pack, gap.query) == key and not gap.resolved and gap.at > history.first_row:
                    start, cut = (gap.at, gap) if cut is None or gap.at > cut.at else (start, cut)
            if key == event_query and cut is None:
                continue
            reaches.append((self.now - start, self.now - history.first_row, key, cut))
        if not reaches:
            return Cell(MISSING, "no stored history of this host's process or IPC queries"), None
        reach, total, key, cut = min(reaches, key=lambda r: r[0])
        said = f"history reaches back {span(reach)} ({named(key)})"
        if cut is not None:
            said += (
                f": data loss ({cut.kind.replace('_', ' ')}) at {iso(cut.at)}; "
                f"{span(total)} with the gap"
            )
        if reach < self.retention:
            grows = "" if cut is not None else " (it grows as collection goes on)"
            return Cell(PARTIAL, f"{said}; below the {span(self.retention)} asked{grows}"), reach
        return Cell(OK, said), reach

    def validation(self) -> Cell:
        runs = self.facts.validations
        if not runs:
            return Cell(MISSING, "never validated: run `fleetctl validate` on this host")
        counts: dict[str, int] = {}
        for run in runs:
            counts[run.result] = counts.get(run.result, 0) + 1
        said = ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))
        failed = [f"{r.scenario} {r.name}" for r in runs if r.result not in PASSED]
        agents = "/".join(sorted({r.agent for r in runs}))
        when = iso(max(r.ran_at for r in runs))
        text = f"{said} ({agents} agent, last run {when})"
        if failed:
            return Cell(PARTIAL, f"{text}; failed: {', '.join(failed)}")
        return Cell(OK, text)
