"""The agent: osqueryd with the TLS config, logger and distributed plugins.

At start it fetches the config (enrolling first, lazily, when it has no node key),
then runs four threads until stopped: the scheduler (one tick a second), the logger
(every ``--logger_tls_period``), distributed queries (every ``--distributed_interval``)
and, with ``--config_refresh`` > 0, config refresh (``--config_accelerated_refresh``
after a failed fetch). Everything that must survive a restart lives in the state
directory: node key, previous results, counters, splays and unsent log lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleetctl.agent import differ
from fleetctl.agent.buffer import LogBuffer, LogForwarder
from fleetctl.agent.client import RemoteClient
from fleetctl.agent.config import (
    MAIN_PACK,
    AgentConfig,
    ConfigError,
    Discovery,
    HostFacts,
    ScheduledQuery,
    _included,
    machine_shard,
    parse_config,
    scheduled_queries,
)
from fleetctl.agent.decorators import DecoratorRunner
from fleetctl.agent.distributed import DistributedRunner
from fleetctl.agent.engines import EmbeddedEngine, QueryEngine
from fleetctl.agent.enroll import Endpoints, HostIdentity, NodeKeys, first_row, host_details
from fleetctl.agent.errors import RequestFailed
from fleetctl.agent.flags import BY_NAME, Flags
from fleetctl.agent.schedule import Scheduler, splayed_interval, startup_order
from fleetctl.agent.scheduled import QueryRunner
from fleetctl.agent.state import StateDB
from fleetctl.agent.statuslog import StatusLog
from fleetctl.agent.transport import Transport
from fleetctl.tables.runtime import FlagInfo, PackInfo

log = logging.getLogger("fleetctl.agent")


@dataclass(frozen=True)
class AgentOptions:
    """How to reach the server and where to keep state; ``flags`` are osqueryd's."""

    server: str
    enroll_secret_path: Path
    state_dir: Path
    ca: str | None = None
    endpoints: Endpoints = field(default_factory=Endpoints)
    flags: Mapping[str, Any] = field(default_factory=dict)
    interval: int | None = None
    distributed: bool = True
    http_transport: httpx.BaseTransport | None = None


class Agent:
    def __init__(self, options: AgentOptions, engine: QueryEngine | None = None) -> None:
        self.options = options
        self.stop_event = threading.Event()
        self.flags = Flags(options.flags)
        self.state = StateDB(options.state_dir)
        self.engine: QueryEngine = engine if engine is not None else EmbeddedEngine()
        self.identity = HostIdentity(
            self.engine,
            self.flags.get_str("host_identifier"),
            self.flags.get_str("specified_identifier"),
        )
        self.transport = Transport(options.server, ca=options.ca, transport=options.http_transport)
        self.keys = NodeKeys(
            self.state,
            self.transport,
            endpoints=options.endpoints,
            flags=self.flags,
            secret_path=options.enroll_secret_path,
            identity=self.identity,
            details=lambda: host_details(self.engine),
            stop=self.stop_event,
        )
        self.client = RemoteClient(self.transport, self.keys, options.endpoints, self.flags)
        self.decorators = DecoratorRunner(self.engine, self.flags)
        self._version: str | None = None
        self.status = StatusLog(
            self.state, self.flags, self.identity, self.version, self.decorators.current
        )
        self.runner = QueryRunner(
            self.engine, self.state, self.flags, self.decorators, self.status, self.identity
        )
        self.buffer = LogBuffer(self.state)
        self.forwarder = LogForwarder(self.buffer, self.client, self.flags)
        self.distributed = DistributedRunner(self.engine, self.client, self.state, self.flags)
        self.config = AgentConfig()
        self.config_ok = False
        self.discovery = Discovery(lambda sql: len(self.engine.query(sql).rows))
        self._facts: HostFacts | None = None
        self._splays: dict[tuple[str, int], int] = {}
        self._config_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- identity and facts

    def version(self) -> str:
        if self._version is None:
            self._version = first_row(self.engine, "osquery_info").get("version", "")
        return self._version

    def facts(self) -> HostFacts:
        if self._facts is None:
            hostname = first_row(self.engine, "system_info").get("hostname", "")
            self._facts = HostFacts(self.engine.osquery_version(), machine_shard(hostname))
        return self._facts

    # -- config

    def fetch_config(self) -> bool:
        """Fetch and apply the config, ``--config_tls_max_attempts`` tries i^2 s apart."""
        attempts = max(1, self.flags.get_int("config_tls_max_attempts"))
        for i in range(1, attempts + 1):
            try:
                doc = self.client.config()
            except RequestFailed as exc:
                log.info("config fetch failed: %s", exc)
                if i == attempts or self.stop_event.wait(i * i):
                    break
                continue
            try:
                self.apply_config(doc)
            except ConfigError as exc:
                self.status.error(f"Error parsing the config: {exc}")
                break
            self.config_ok = True
            return True
        self.config_ok = False
        self.status.warning("Error retrieving config from the TLS config endpoint")
        return False

    def apply_config(self, doc: Mapping[str, Any]) -> None:
        config = parse_config(doc, self.flags.get_int("schedule_default_interval"))
        with self._config_lock:
            if config.hash == self.config.hash:
                return  # an unchanged config is a no-op
            warnings = list(config.warnings) + self.flags.apply_options(config.options)
            self.decorators.load(config.decorators)
            self.config = config
        for warning in warnings:
            self.status.warning(warning)
        names = [q.name for q, _ in self.schedule()]
        with self.state.transaction() as conn:
            differ.mark_scheduled(conn, names, int(time.time()))
        self._sync_runtime()

    def schedule(self) -> list[tuple[ScheduledQuery, int]]:
        """The queries that run now, each with its splayed interval."""
        with self._config_lock:
            config = self.config
        queries = scheduled_queries(
            config,
            self.facts(),
            self.discovery,
            delimiter=self.flags.get_str("pack_delimiter"),
            refresh=self.flags.get_int("pack_refresh_interval"),
        )
        percent = self.flags.get_int("schedule_splay_percent")
        out = []
        for query in queries:
            interval = self.options.interval or query.interval
            key = (query.name, interval)
            if key not in self._splays:
                self._splays[key] = splayed_interval(self.state, query.name, interval, percent)
            out.append((query, self._splays[key]))
        return out

    # -- runtime facts behind the osquery_* tables of the embedded engine

    def _sync_runtime(self) -> None:
        runtime = getattr(self.engine, "runtime", None)
        if runtime is None:
            return
        runtime.config_hash = self.config.hash
        runtime.config_valid = self.config_ok or bool(self.config.hash)
        runtime.flags = {
            name: FlagInfo(
                name,
                str(value),
                str(BY_NAME[name].default),
                type(BY_NAME[name].default).__name__,
                BY_NAME[name].help,
            )
            for name, value in self.flags.values().items()
        }
        runtime.schedule = list(self.runner.stats.values())
        facts, refresh = self.facts(), self.flags.get_int("pack_refresh_interval")
        runtime.packs = [  # osquery lists "main" only when the config has a schedule
            PackInfo(
                p.name,
                p.platform,
                len(p.queries),
                p.version,
                p.shard,
                active=(
                    _included(p.platform, p.version, p.shard, facts)
                    and self.discovery.active(p, refresh)
                ),
            )
            for p in self.config.packs
            if p.queries or p.name != MAIN_PACK
        ]

    def launch(self, query: ScheduledQuery) -> None:
        try:
            self.runner.run(query)
        except Exception:
            log.exception("scheduled query %s failed", query.name)
        self._sync_runtime()

    # -- lifetime

    def _thread(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _refresh_loop(self, stop: threading.Event) -> None:
        while True:
            period = (
                self.flags.get_int("config_refresh")
                if self.config_ok
                else self.flags.get_int("config_accelerated_refresh")
            )
            if stop.wait(max(1, period)):
                return
            try:
                self.fetch_config()
            except Exception:
                log.exception("config refresh failed")

    def start(self) -> None:
        """Fetch the config, then start the scheduler, logger, distributed and refresh."""
        self.fetch_config()
        scheduler = Scheduler(self.schedule, self.launch, self.decorators.run_interval)
        self._thread("scheduler", scheduler.run)
        self._thread("logger", self.forwarder.run)
        if self.options.distributed:
            self._thread("distributed", self.distributed.run)
        if self.flags.get_int("config_refresh") > 0:
            self._thread("config", self._refresh_loop)

    def run_once(self, timeout: float = 60.0) -> bool:
        """Config, every scheduled query once, one distributed cycle, then flush the logs.

        True when every buffered line was delivered.
        """
        self.fetch_config()
        queries = [q for q, _ in self.schedule()]
        for query in startup_order(queries) + [q for q in queries if q.startup_priority is None]:
            self.launch(query)
        if self.options.distributed:
            self.distributed.cycle(self.stop_event)
        return self.forwarder.drain(self.stop_event, timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop every loop (each finishes what it is doing) and release the state file."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._threads.clear()
        self.transport.close()
        self.engine.close()
        self.state.close()
