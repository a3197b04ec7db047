"""``osquery_info``, ``osquery_flags``, ``osquery_schedule``, ``osquery_registry`` and
``osquery_events``, answered from the scan's ``AgentRuntime``.

Fleet servers read these to learn which agent they talk to (enrollment sends
``osquery_info``), so they report this project's version and build, never osquery's.
"""

from __future__ import annotations

from typing import Any

from fleetctl.tables.runtime import RegistryItem
from fleetctl.tables.scan import Constraints, Scan
from fleetctl.tables.system import host_uuid


def generate_info(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    rt = scan.runtime
    return [{
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
    }]


def generate_flags(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return [
        {"name": name, "type": flag.type, "description": flag.description,
         "default_value": flag.default_value, "value": flag.value,
         "shell_only": int(flag.shell_only)}
        for name, flag in sorted(scan.runtime.flags.items())
        if len(name) > 2  # osquery skips single-character flags
    ]


def generate_schedule(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return [
        {
            "name": q.name, "query": q.query, "interval": q.interval,
            "executions": q.executions, "last_executed": q.last_executed,
            "denylisted": int(q.denylisted), "output_size": q.output_size,
            "wall_time": q.wall_time_ms // 1000, "wall_time_ms": q.wall_time_ms,
            "last_wall_time_ms": q.last_wall_time_ms, "user_time": q.user_time,
            "last_user_time": q.last_user_time, "system_time": q.system_time,
            "last_system_time": q.last_system_time, "average_memory": q.average_memory,
            "last_memory": q.last_memory,
        }
        for q in scan.runtime.schedule
    ]


def default_registry() -> list[RegistryItem]:
    """Built-in tables as internal, active ``table`` registry items."""
    from fleetctl.tables import TABLES

    return [RegistryItem("table", name, internal=True) for name in sorted(TABLES)]


def generate_registry(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    items = scan.runtime.registry
    if items is None:
        items = default_registry()
    return [
        {"registry": item.registry, "name": item.name, "owner_uuid": item.owner_uuid,
         "internal": int(item.internal), "active": int(item.active)}
        for item in items
    ]


def generate_events(constraints: Constraints, scan: Scan) -> list[dict[str, Any]]:
    return [
        {"name": e.name, "publisher": e.publisher, "type": e.type,
         "subscriptions": e.subscriptions, "events": e.events, "refreshes": e.refreshes,
         "active": int(e.active)}
        for e in scan.runtime.events
    ]
