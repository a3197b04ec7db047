"""What the osquery_* tables report about the running agent.

osqueryd answers ``osquery_info``, ``osquery_flags``, ``osquery_schedule`` and friends
from its own state. This engine is not osqueryd, so it says so: the version is this
project's, ``build_distro`` names the Python it runs on, and the schedule, flags and
registry are whatever the embedding agent hands in. Left alone, an ``AgentRuntime``
describes a bare engine: no schedule, no flags, no packs, the built-in tables as registry
items, the core and this project's table provider as extensions, and the event publishers
and subscribers behind the evented tables, none of them running.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from dataclasses import dataclass, field

from fleetctl import __version__

#: osquery's platform bitmask for Linux (TYPE_POSIX | TYPE_LINUX), as sent in enrollment.
LINUX_PLATFORM_MASK = 9


@dataclass(frozen=True)
class FlagInfo:
    """One row of osquery_flags."""

    name: str
    value: str
    default_value: str = ""
    type: str = "string"
    description: str = ""
    shell_only: bool = False


@dataclass
class ScheduledQueryStats:
    """One row of osquery_schedule: a scheduled query and its accumulated performance."""

    name: str
    query: str
    interval: int
    denylisted: bool = False
    executions: int = 0
    last_executed: int = 0
    output_size: int = 0
    wall_time_ms: int = 0
    last_wall_time_ms: int = 0
    user_time: int = 0
    last_user_time: int = 0
    system_time: int = 0
    last_system_time: int = 0
    average_memory: int = 0
    last_memory: int = 0


@dataclass(frozen=True)
class RegistryItem:
    """One row of osquery_registry."""

    registry: str
    name: str
    owner_uuid: int = 0
    internal: bool = False
    active: bool = True


@dataclass(frozen=True)
class EventSource:
    """One row of osquery_events (publisher or subscriber)."""

    name: str
    publisher: str
    type: str
    subscriptions: int = 0
    events: int = 0
    refreshes: int = 0
    active: bool = False


@dataclass(frozen=True)
class ExtensionInfo:
    """One row of osquery_extensions; ``uuid`` 0 is the core (``type`` ``core``)."""

    uuid: int
    name: str
    version: str
    sdk_version: str = ""
    path: str = ""
    type: str = "extension"


@dataclass(frozen=True)
class PackInfo:
    """One row of osquery_packs: a pack of the config and whether it runs on this host.

    ``query_count`` is not an osquery_packs column (osquery's spec has none); it is kept
    for callers that summarise the config. The discovery counters are None (SQL NULL)
    when the agent does not count discovery runs.
    """

    name: str
    platform: str = ""
    query_count: int = 0
    version: str = ""
    shard: int = 0
    active: bool = False
    discovery_cache_hits: int | None = None
    discovery_executions: int | None = None


def _build_distro() -> str:
    return f"python{platform.python_version()}"


@dataclass
class AgentRuntime:
    """Runtime facts of the process serving the tables; the agent replaces the defaults.

    ``registry``, ``events`` and ``extension_list`` left at None are derived from the
    tables served (``fleetctl.tables.osquery_state``): ``tables`` names them, None for
    every table of this package. The engine sets it, so an engine limited to osquery's
    own tables (stock mode) registers no extension table and no extension owning one,
    and pack discovery on those tables fails as it does on a stock osqueryd.
    """

    version: str = __version__
    pid: int = field(default_factory=os.getpid)
    start_time: int = field(default_factory=lambda: int(time.time()))
    instance_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    host_uuid: str | None = None
    config_hash: str = ""
    config_valid: bool = False
    extensions: str = "inactive"
    build_platform: str = field(default_factory=lambda: platform.system().lower())
    build_distro: str = field(default_factory=_build_distro)
    watcher: int = -1
    platform_mask: int = LINUX_PLATFORM_MASK
    flags: dict[str, FlagInfo] = field(default_factory=dict)
    schedule: list[ScheduledQueryStats] = field(default_factory=list)
    registry: list[RegistryItem] | None = None
    events: list[EventSource] | None = None
    extension_list: list[ExtensionInfo] | None = None
    packs: list[PackInfo] = field(default_factory=list)
    tables: frozenset[str] | None = None
