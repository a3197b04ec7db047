"""The osqueryd flags the agent honours, declared once as (name, default, kind, help).

osqueryd takes flags on its command line and, except for the CLI-only ones, lets the
config's ``options`` change them at run time (``plugins/config/parsers/options.cpp``).
``Flags`` holds the current values: CLI values first, then every config's options on
top. An option that a later config drops keeps its last value, as in osqueryd, where
``options`` only ever update flags.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Flag:
    name: str
    default: bool | int | str
    help: str
    cli_only: bool = False


FLAGS: tuple[Flag, ...] = (
    # Where and how to reach the server: command line only, as in osqueryd.
    Flag("config_refresh", 0, "Seconds between config fetches (0: once).", cli_only=True),
    Flag("config_accelerated_refresh", 300, "Refresh period after a failed fetch.", cli_only=True),
    Flag("config_tls_max_attempts", 3, "Attempts per config fetch.", cli_only=True),
    Flag("tls_enroll_max_attempts", 12, "Enroll attempts per request (0: forever).", cli_only=True),
    Flag("tls_enroll_max_interval", 600, "Longest sleep between enroll attempts.", cli_only=True),
    Flag("disable_reenrollment", False, "Keep a key the server calls invalid.", cli_only=True),
    Flag(
        "host_identifier", "hostname", "hostname|uuid|instance|ephemeral|specified.", cli_only=True
    ),
    Flag("specified_identifier", "", "Identifier when host_identifier=specified.", cli_only=True),
    # Settable from the config's options.
    Flag("schedule_epoch", 0, "Epoch of scheduled query results."),
    Flag("schedule_splay_percent", 10, "Percent of random splay on query intervals."),
    Flag("schedule_default_interval", 3600, "Interval of queries that name none."),
    Flag("pack_delimiter", "_", "Delimiter of pack query names in logs."),
    Flag("pack_refresh_interval", 3600, "Seconds a pack's discovery result is cached."),
    Flag("logger_event_type", True, "One result line per row (else one per run)."),
    Flag("logger_snapshot_event_type", False, "One snapshot line per row."),
    Flag("logger_numerics", False, "Numbers as JSON numbers in result lines."),
    Flag("decorations_top_level", False, "Decorations merged into the top level."),
    Flag("disable_decorators", False, "Do not run decorator queries."),
    Flag("logger_tls_period", 4, "Seconds between log flushes."),
    Flag("logger_tls_max_lines", 1024, "Most lines per log flush."),
    Flag("logger_tls_max_linesize", 1048576, "Longer lines are dropped."),
    Flag("logger_tls_backoff_max", 3600, "Longest backoff after failed flushes (0: none)."),
    Flag("logger_tls_compress", False, "gzip log request bodies."),
    Flag("logger_min_status", 0, "Lowest severity of status lines sent."),
    Flag("tls_disable_status_log", False, "Do not send status lines."),
    Flag("buffered_log_max", 1000000, "Most buffered lines before the oldest go (0: no limit)."),
    Flag("distributed_interval", 60, "Seconds between distributed reads."),
    Flag("distributed_tls_max_attempts", 3, "Attempts per distributed request."),
    Flag("distributed_denylist_duration", 86400, "Seconds a query that killed us is refused."),
)

BY_NAME: dict[str, Flag] = {flag.name: flag for flag in FLAGS}

# osqueryd flags that config options cannot set (warned about and ignored).
CLI_ONLY_PREFIXES = (
    "tls_hostname",
    "enroll_",
    "config_tls_endpoint",
    "config_refresh",
    "config_tls_refresh",
    "config_tls_max_attempts",
    "disable_carver",
    "carver_",
)


class FlagError(ValueError):
    """A flag value that does not fit its flag."""


def coerce(flag: Flag, value: Any) -> bool | int | str:
    """A JSON or command-line value as the flag's kind (osquery accepts "true", "10")."""
    kind = type(flag.default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return value != 0
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
    elif kind is int:
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise FlagError(f"invalid value {value!r} for flag {flag.name}")


class Flags:
    """Current flag values, safe to read from every agent thread."""

    def __init__(self, cli: Mapping[str, Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, bool | int | str] = {f.name: f.default for f in FLAGS}
        for name, value in (cli or {}).items():
            self._values[name] = coerce(BY_NAME[name], value)

    def get_int(self, name: str) -> int:
        value = self._values[name]
        assert isinstance(value, int)
        return int(value)

    def get_bool(self, name: str) -> bool:
        return bool(self._values[name])

    def get_str(self, name: str) -> str:
        return str(self._values[name])

    def values(self) -> dict[str, bool | int | str]:
        with self._lock:
            return dict(self._values)

    def apply_options(self, options: Mapping[str, Any]) -> list[str]:
        """Set flags from config ``options``; return warnings for what was refused."""
        warnings: list[str] = []
        with self._lock:
            for name, value in options.items():
                flag = BY_NAME.get(name)
                if (flag is not None and flag.cli_only) or name.startswith(CLI_ONLY_PREFIXES):
                    warnings.append(f"Cannot set flag {name} from the config: command line only")
                    continue
                if flag is None:
                    if not name.startswith("custom_"):
                        warnings.append(f"Cannot set unknown or invalid flag: {name}")
                    continue
                try:
                    self._values[name] = coerce(flag, value)
                except FlagError as exc:
                    warnings.append(str(exc))
        return warnings
