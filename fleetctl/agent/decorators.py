"""Config decorators: ``load`` on every config load, ``always`` before each scheduled
query, ``interval`` every N seconds (N a multiple of 60).

``osquery/config/parsers/decorators.cpp``: each query's first row is merged into the
decorations of its kind; the kinds merge in the order load, always, interval, later
ones overwriting. A failing decorator query contributes nothing. Values are strings.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from fleetctl.agent.config import Decorators
from fleetctl.agent.engines import QueryEngine
from fleetctl.agent.errors import EngineError
from fleetctl.agent.flags import Flags
from fleetctl.agent.schedule import is_due
from fleetctl.engine import osquery_string

KINDS = ("load", "always", "interval")


class DecoratorRunner:
    def __init__(self, engine: QueryEngine, flags: Flags) -> None:
        self._engine = engine
        self._flags = flags
        self._lock = threading.Lock()
        self._config = Decorators()
        self._values: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}

    def _run(self, queries: Sequence[str]) -> dict[str, str]:
        merged: dict[str, str] = {}
        for sql in queries:
            try:
                result = self._engine.query(sql)
            except EngineError:
                continue
            if result.rows:
                first = result.rows[0]
                merged.update({k: osquery_string(first.get(k)) for k in result.columns})
        return merged

    def load(self, config: Decorators) -> None:
        """A new config: forget every decoration and run the ``load`` queries."""
        with self._lock:
            self._config = config
            self._values = {kind: {} for kind in KINDS}
            if not self._flags.get_bool("disable_decorators"):
                self._values["load"] = self._run(config.load)

    def run_always(self) -> None:
        if self._config.always and not self._flags.get_bool("disable_decorators"):
            values = self._run(self._config.always)
            with self._lock:
                self._values["always"] = values

    def run_interval(self, i: int, previous: int) -> None:
        if self._flags.get_bool("disable_decorators"):
            return
        for seconds, queries in self._config.interval:
            if is_due(i, previous, seconds):
                values = self._run(queries)
                with self._lock:
                    self._values["interval"].update(values)

    def current(self) -> dict[str, str]:
        with self._lock:
            merged: dict[str, str] = {}
            for kind in KINDS:
                merged.update(self._values[kind])
            return merged
