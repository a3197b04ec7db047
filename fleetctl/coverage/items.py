"""The telemetry items of DET0493's visibility list, and where each platform's are
collected: which shipped pack query, which evented table, publisher and flags.

An item is judged per host (``fleetctl.coverage.judge``) from what the store holds of
these sources; nothing here reads anything. Publisher and subscriber names are those
osqueryd registers (``osquery_events.name``): ``auditeventpublisher`` feeds Linux
``process_events``, ``endpointsecurity`` feeds macOS ``es_process_events``, and
``etw_process_publisher`` feeds Windows ``process_etw_events``.
"""

from __future__ import annotations

from dataclasses import dataclass

#: (pack, query) as the host's logged query names split at ingest.
QueryKey = tuple[str | None, str]

OK, PARTIAL, MISSING = "ok", "partial", "missing"
STATUSES = (OK, PARTIAL, MISSING)
PLATFORMS = ("linux", "darwin", "windows")


@dataclass(frozen=True)
class Item:
    id: str
    title: str


ITEMS = (
    Item("process_events", "process creation events"),
    Item("lineage", "parent-child lineage"),
    Item("command_lines", "command lines and binaries"),
    Item("ipc", "IPC channels"),
    Item("context", "user, session and host"),
    Item("freshness", "freshness"),
    Item("schedule", "schedule health"),
    Item("retention", "retention"),
)

HEALTH = "telemetry-health"
OSQUERY_INFO: QueryKey = (HEALTH, "osquery_info")
EVENT_FLAGS: QueryKey = (HEALTH, "event_flags")
EVENT_PUBLISHERS: QueryKey = (HEALTH, "event_publishers")
SCHEDULE_HEALTH: QueryKey = (HEALTH, "schedule_health")
DENYLISTED: QueryKey = (HEALTH, "denylisted_queries")
EXTENSION_TABLES: QueryKey = (HEALTH, "extension_tables")
PACK_STATUS: QueryKey = (HEALTH, "pack_status")
#: The telemetry-health queries whose current rows the judge reads whole.
STATE_QUERIES = (
    OSQUERY_INFO,
    EVENT_FLAGS,
    EVENT_PUBLISHERS,
    SCHEDULE_HEALTH,
    DENYLISTED,
    EXTENSION_TABLES,
    PACK_STATUS,
)


@dataclass(frozen=True)
class Flag:
    """An osquery flag an event source needs: the value it needs, and osqueryd's
    default (what a host that never set it runs with)."""

    name: str
    needed: str
    default: str


@dataclass(frozen=True)
class EventSource:
    """Where a platform's process creation events come from."""

    table: str  # the subscriber, as osquery_events names it
    publisher: str
    flags: tuple[Flag, ...]
    query: QueryKey  # the shipped pack query that reads the table
    note: str = ""  # what the shipped query keeps of the events, when not all


@dataclass(frozen=True)
class Platform:
    """The sources of one platform's items."""

    name: str
    lineage: QueryKey
    events: EventSource
    #: IPC queries, each with what it shows, in the order the report names them.
    ipc: tuple[tuple[QueryKey, str], ...]
    sessions: QueryKey | None  # login sessions (logged_in_users), where the packs have it
    user_column: str | None  # the lineage query's user column


EVENTS_ON = Flag("disable_events", "false", "false")

LINUX = Platform(
    name="linux",
    lineage=("ipc-telemetry", "process_lineage"),
    events=EventSource(
        table="process_events",
        publisher="auditeventpublisher",
        flags=(
            EVENTS_ON,
            Flag("disable_audit", "false", "true"),
            Flag("audit_allow_process_events", "true", "true"),
        ),
        query=("ipc-telemetry", "process_exec_events"),
    ),
    ipc=(
        (("ipc-telemetry", "pipe_partners"), "pipes with their partner processes"),
        (("ipc-telemetry", "stdio_channels"), "stdio channels"),
        (("ipc-telemetry", "unix_sockets"), "unix sockets"),
        (("ipc-telemetry", "unix_listeners"), "unix socket listeners"),
        (("ipc-telemetry", "named_fifos"), "named FIFOs"),
        (("ipc-telemetry", "unix_socket_events"), "unix socket connects (audit)"),
        (("ipc-telemetry-extension", "process_stdio"), "stdio with socket peers (extension)"),
        (("ipc-telemetry-extension", "unix_socket_peers"), "unix socket peers (extension)"),
    ),
    sessions=("ipc-telemetry", "logged_in_users"),
    user_column="uid",
)

DARWIN = Platform(
    name="darwin",
    lineage=("ipc-telemetry", "process_lineage_darwin"),
    events=EventSource(
        table="es_process_events",
        publisher="endpointsecurity",
        flags=(EVENTS_ON, Flag("disable_endpointsecurity", "false", "true")),
        query=("ipc-telemetry-macos", "es_exec_lineage"),
    ),
    ipc=(
        (("ipc-telemetry", "unix_sockets"), "unix sockets"),
        (("ipc-telemetry", "unix_listeners"), "unix socket listeners"),
        (("ipc-telemetry", "launchd_mach_services"), "launchd Mach services"),
        (("ipc-telemetry-macos", "es_xpc_spawned"), "XPC-spawned execs (EndpointSecurity)"),
    ),
    sessions=("ipc-telemetry", "logged_in_users"),
    user_column="uid",
)

WINDOWS = Platform(
    name="windows",
    lineage=("ipc-telemetry-windows", "process_lineage"),
    events=EventSource(
        table="process_etw_events",
        publisher="etw_process_publisher",
        flags=(EVENTS_ON, Flag("enable_process_etw_events", "true", "false")),
        query=("ipc-telemetry-windows", "office_lolbin_starts"),
        note="the shipped query keeps only script engines and LOLBins started by Office",
    ),
    ipc=(
        (("ipc-telemetry-windows", "named_pipes_snapshot"), "named pipes with their servers"),
        (("ipc-telemetry-windows", "named_pipes"), "new named pipes"),
    ),
    sessions=None,
    user_column=None,
)

BY_PLATFORM = {p.name: p for p in (LINUX, DARWIN, WINDOWS)}

#: Lineage columns whose fill the judge weighs.
LINEAGE_COLUMNS = ("parent", "parent_name", "grandparent_name", "cmdline", "path", "uid")
#: How often named pipe rows know their server process.
PIPE_COLUMNS = ("pid",)


def sources(platform: Platform) -> tuple[QueryKey, ...]:
    """Every pack query an item of ``platform`` is judged from."""
    keys = [platform.lineage, platform.events.query, *(key for key, _ in platform.ipc)]
    if platform.sessions:
        keys.append(platform.sessions)
    return tuple(keys)


#: Queries that report their whole state at each run (``"snapshot": true``), so their
#: last result says when they last ran; a differential query logs only on change. The
#: process and channel queries are differential (a quiet host sends nothing for them),
#: so freshness comes from these, and a query that stopped from schedule health.
SNAPSHOTS = frozenset(
    {
        OSQUERY_INFO,
        ("ipc-telemetry-windows", "named_pipes_snapshot"),
    }
)
