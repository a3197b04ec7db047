"""``osquery_info``, ``osquery_flags``, ``osquery_schedule``, ``osquery_registry``,
``osquery_events``, ``osquery_extensions`` and ``osquery_packs``, answered from the
scan's ``AgentRuntime``.

Fleet servers read these to learn which agent they talk to (enrollment sends
``osquery_info``), so they report this project's version and build, never osquery's.

What an untouched runtime reports, derived from the tables this package serves:

* ``osquery_registry``: every served table (``internal`` 1 for osquery's utility
  tables, as ``REGISTER_INTERNAL`` marks them, else 0), plus the event publishers and
  subscribers behind the evented tables, inactive.
* ``osquery_events``: those publishers and subscribers, none active (see
  ``fleetctl.tables.events``).
* ``osquery_extensions``: the core (uuid 0, type ``core``, as osqueryd adds itself) and,
  while the project's own tables are served, a ``fleetctl`` row that owns them in the
  registry. In this engine they are built in: no extension manager socket exists
  (``osquery_info.extensions`` stays ``inactive``), so sdk_version is empty, the path
  too (the core's is the ``extensions_socket`` flag if the runtime has one), and the
  ``fleetctl`` uuid is a fixed id that only links it to its registry rows. osqueryd
  itself lists no row at all while its manager is off; this engine always has its own
  tables to describe.
* ``osquery_packs``: nothing until the agent hands in its config's packs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fleetctl import __version__
from fleetctl.schema import default_schema
from fleetctl.tables import events
from fleetctl.tables.runtime import AgentRuntime, EventSource, ExtensionInfo, RegistryItem
from fleetctl.tables.scan import Constraints, Scan
from fleetctl.tables.system import host_uuid

if TYPE_CHECKING:
    from fleetctl.tables import TableSpec

#: Name of the osquery_extensions row owning this project's tables (as the extension
#: registers itself with osqueryd, ``fleetctl.extension.server.EXTENSION_NAME``).
EXTENSION_NAME = "fleetctl"
#: Its uuid in the embedded engine, which has no extension manager to assign one.
EMBEDDED_EXTENSION_UUID = 1


def generate_info(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    rt = scan.runtime
    return [
        {
            "pid": rt.pid,
            "uuid": rt.host_uuid or host_uuid(scan.etc_root),
            "instance_id": rt.instance_id,
            "version": rt.version,
            "config_hash": rt.config_hash,
            "config_valid": int(rt.config_valid),
            "extensions": rt.extensions,
            "build_platform": rt.build_platform,
            "build_distro": rt.build_distro,
            "start_time": rt.start_time,
            "watcher": rt.watcher,
            "platform_mask": rt.platform_mask,
        }
    ]


def generate_flags(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "type": flag.type,
            "description": flag.description,
            "default_value": flag.default_value,
            "value": flag.value,
            "shell_only": int(flag.shell_only),
        }
        for name, flag in sorted(scan.runtime.flags.items())
        if len(name) > 2  # osquery skips single-character flags
    ]


def generate_schedule(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return [
        {
            "name": q.name,
            "query": q.query,
            "interval": q.interval,
            "executions": q.executions,
            "last_executed": q.last_executed,
            "denylisted": int(q.denylisted),
            "output_size": q.output_size,
            "wall_time": q.wall_time_ms // 1000,
            "wall_time_ms": q.wall_time_ms,
            "last_wall_time_ms": q.last_wall_time_ms,
            "user_time": q.user_time,
            "last_user_time": q.last_user_time,
            "system_time": q.system_time,
            "last_system_time": q.last_system_time,
            "average_memory": q.average_memory,
            "last_memory": q.last_memory,
        }
        for q in scan.runtime.schedule
    ]


def _served(runtime: AgentRuntime) -> Mapping[str, TableSpec]:
    """The tables the runtime's engine serves (all of them unless it names fewer)."""
    from fleetctl.tables import TABLES

    if runtime.tables is None:
        return TABLES
    return {name: spec for name, spec in TABLES.items() if name in runtime.tables}


def default_extensions(runtime: AgentRuntime) -> list[ExtensionInfo]:
    """The core, then this project's tables as the ``fleetctl`` extension if served."""
    socket = runtime.flags.get("extensions_socket")
    rows = [
        ExtensionInfo(0, "core", runtime.version, path=socket.value if socket else "", type="core")
    ]
    if any(spec.extension for spec in _served(runtime).values()):
        rows.append(ExtensionInfo(EMBEDDED_EXTENSION_UUID, EXTENSION_NAME, __version__))
    return rows


def extension_list(runtime: AgentRuntime) -> list[ExtensionInfo]:
    if runtime.extension_list is not None:
        return runtime.extension_list
    return default_extensions(runtime)


def default_events(runtime: AgentRuntime) -> list[EventSource]:
    return events.event_sources(frozenset(_served(runtime)))


def event_list(runtime: AgentRuntime) -> list[EventSource]:
    return runtime.events if runtime.events is not None else default_events(runtime)


def _utility(name: str) -> bool:
    """osquery registers the tables of ``specs/utility`` with REGISTER_INTERNAL."""
    return default_schema().entry(name).spec_path.startswith("specs/utility/")


def default_registry(runtime: AgentRuntime) -> list[RegistryItem]:
    """Event publishers and subscribers, then every served table; the
    project's own tables are owned by the ``fleetctl`` extension row when it is listed."""
    owner = next(
        (e.uuid for e in extension_list(runtime) if e.name == EXTENSION_NAME and e.uuid != 0), 0
    )
    sources = event_list(runtime)
    items = [
        RegistryItem("event_publisher", e.name, active=e.active)
        for e in sources
        if e.type == "publisher"
    ]
    items += [
        RegistryItem("event_subscriber", e.name, active=e.active)
        for e in sources
        if e.type == "subscriber"
    ]
    for name, spec in sorted(_served(runtime).items()):
        if spec.extension and owner:
            items.append(RegistryItem("table", name, owner_uuid=owner))
        else:
            items.append(RegistryItem("table", name, internal=_utility(name)))
    return items


def generate_registry(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    items = scan.runtime.registry
    if items is None:
        items = default_registry(scan.runtime)
    return [
        {
            "registry": item.registry,
            "name": item.name,
            "owner_uuid": item.owner_uuid,
            "internal": int(item.internal),
            "active": int(item.active),
        }
        for item in items
    ]


def generate_events(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return [
        {
            "name": e.name,
            "publisher": e.publisher,
            "type": e.type,
            "subscriptions": e.subscriptions,
            "events": e.events,
            "refreshes": e.refreshes,
            "active": int(e.active),
        }
        for e in event_list(scan.runtime)
    ]


def generate_extensions(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return [
        {
            "uuid": e.uuid,
            "name": e.name,
            "version": e.version,
            "sdk_version": e.sdk_version,
            "path": e.path,
            "type": e.type,
        }
        for e in extension_list(scan.runtime)
    ]


def generate_packs(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "platform": p.platform,
            "version": p.version,
            "shard": p.shard,
            "discovery_cache_hits": p.discovery_cache_hits,
            "discovery_executions": p.discovery_executions,
            "active": int(p.active),
        }
        for p in scan.runtime.packs
    ]
