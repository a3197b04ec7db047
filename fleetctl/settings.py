"""Server settings, declared once: the fields of ``Settings``.

Each field that can be set from outside carries a ``Setting`` (``setting()``): its
``fleetctl serve`` option, its environment variable, its help, and how the option's text
becomes the value. ``fleetctl serve``'s options, and ``up``'s ``--listen`` and
``--learning-window`` and ``db``'s ``--db``, are generated from it
(``fleetctl.cli.options``), and so is the settings table in the README (``python -m
fleetctl.settings`` prints it; a test holds the README to it).

The home directory holds everything a single-machine deployment needs: the SQLite
database, the TLS material, the enroll secret and the client context file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from fleetctl.timeutil import format_duration, parse_duration

MiB = 1024 * 1024
# How long a new host (and a new fleet) only learns execution paths: the one value the
# server, the CLI and the detector (``fleetctl.detection``) default to.
DEFAULT_LEARNING_WINDOW = 24 * 3600
HOME_ENV = "FLEETCTL_HOME"
# What makes an enrollment an earlier host (``Settings.host_identity``).
HOST_IDENTITIES = ("uuid", "instance", "hostname")


def default_home() -> Path:
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path(platformdirs.user_data_dir("fleetctl"))


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


DETECTION_HOSTS = 1_000  # hosts whose detection state stays in memory, by default


@dataclass(frozen=True)
class Setting:
    """How one ``Settings`` field is set from outside."""

    help: str
    #: The ``fleetctl serve`` option, e.g. ``--max-body``; None: not an option.
    option: str | None = None
    #: The environment variable the option (or, without one, the field) reads.
    env: str | None = None
    #: The option takes a duration (``30s``, ``15m``, ``1h``, ``1d``); the value is seconds.
    duration: bool = False
    #: The smallest value the option takes (None: any), excluded when ``exclusive``.
    minimum: float | None = None
    exclusive: bool = False
    #: The option names a file that must exist.
    existing_file: bool = False
    #: Raises ValueError for a value the server cannot use.
    check: Callable[[Any], object] | None = None
    #: The default as the README says it, where the value itself says nothing.
    default_text: str | None = None
    #: The only values the option takes.
    choices: tuple[str, ...] | None = None


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def setting(text: str, **declared: Any) -> dict[str, Setting]:
    """A ``Settings`` field's metadata: its ``Setting``, with help ``text``."""
    return {"setting": Setting(text, **declared)}


@dataclass(frozen=True)
class Settings:
    """Everything the server needs, resolved once and passed in explicitly.

    The fields with an option are in the order ``fleetctl serve --help`` lists them."""

    home: Path = field(
        default_factory=default_home,
        metadata=setting(
            "Where the server keeps its store, TLS material, enroll secret and client context.",
            env=HOME_ENV,
            default_text="the platform's user data directory, e.g. `~/.local/share/fleetctl`",
        ),
    )
    db: str | None = field(
        default=None,
        metadata=setting(
            "Database URL (default: sqlite:///<home>/fleet.db).", option="--db", env="FLEETCTL_DB"
        ),
    )
    analyst_db: str | None = field(
        default=None,
        metadata=setting(
            "PostgreSQL URL of a hand-made analyst role for `fleetctl sql`"
            " (default: <database>_analyst, made by `fleetctl db upgrade`).",
            option="--analyst-db",
            env="FLEETCTL_ANALYST_DB",
        ),
    )
    listen: str = field(
        default="127.0.0.1:8443",
        metadata=setting("HOST:PORT.", option="--listen", check=parse_listen),
    )
    enroll_secrets: tuple[str, ...] = field(
        default=(),
        metadata=setting(
            "Accepted enroll secret (repeatable). Default: generate one on first start.",
            option="--enroll-secret",
        ),
    )
    host_identity: str = field(
        default="uuid",
        metadata=setting(
            "Which enrolled host an enrolling osqueryd is, as osquery's --host_identifier and"
            " Fleet's osquery_host_identifier: `uuid` (system_info.uuid; a second host"
            " identifier presenting a UUID becomes a host of its own, reported as a clone),"
            " `instance` (osquery's instance id: tells cloned machines apart) or `hostname`.",
            option="--host-identity",
            choices=HOST_IDENTITIES,
        ),
    )
    tls_cert: Path | None = field(
        default=None,
        metadata=setting(
            "The server's certificate (PEM), instead of the one made on first start.",
            option="--tls-cert",
            existing_file=True,
        ),
    )
    tls_key: Path | None = field(
        default=None,
        metadata=setting(
            "The private key of --tls-cert (PEM).", option="--tls-key", existing_file=True
        ),
    )
    max_body: int = field(
        default=16 * MiB,
        metadata=setting(
            "Largest request body after decompression, in bytes.", option="--max-body"
        ),
    )
    learning_window: int = field(
        default=DEFAULT_LEARNING_WINDOW,
        metadata=setting(
            "How long a new host (and a new fleet) only learns execution paths.",
            option="--learning-window",
            duration=True,
        ),
    )
    detection_hosts: int = field(
        default=DETECTION_HOSTS,
        metadata=setting(
            "Hosts whose detection state is kept in memory (about 2.8 MB each at 360"
            " processes, measured by bench/bench_detection.py), split over the workers; a"
            " host beyond them is judged by a rebuild from the store.",
            option="--detection-hosts",
            minimum=0,
        ),
    )
    detection_judges: int | None = field(
        default=None,
        metadata=setting(
            "Threads of each process that judges (a worker, or a judge process) judging"
            " hosts at once, one judge per host at a time: while one waits on the database"
            " or rebuilds a host, the others judge.",
            option="--detection-judges",
            minimum=1,
            default_text="1 in a judge process (--detection-processes); in a worker, 4 on"
            " PostgreSQL, 1 on SQLite (its one writer lock serialises them)",
        ),
    )
    workers: int | None = field(
        default=None,
        metadata=setting(
            "Server processes sharing the listener, each serving any host; one that dies is"
            " started again. One per core on SQLite too: its one writer lock is held only"
            " for each transaction (one process's connections queue on it just as several"
            " processes' do), while TLS, parsing and detection run in parallel.",
            option="--workers",
            minimum=1,
            default_text="one per core; on PostgreSQL, where judge processes run by default,"
            " one per two cores; less any --detection-processes given",
        ),
    )
    detection_processes: int | None = field(
        default=None,
        metadata=setting(
            "Processes that only judge detection, beside the --workers that serve hosts"
            " (each batch's row changes then reach its judge through the store): a"
            " judgement no longer shares an interpreter with request handlers. 0: each"
            " worker judges its share of the hosts.",
            option="--detection-processes",
            minimum=0,
            default_text="with neither option given, on PostgreSQL and 2 or more cores: one"
            " per core, and half the cores serve hosts (--workers); else 0",
        ),
    )
    max_carve: int = field(
        default=512 * MiB,
        metadata=setting(
            "Largest file carve a host may announce, in bytes.", option="--max-carve", minimum=0
        ),
    )
    carve_timeout: int = field(
        default=3600,
        metadata=setting(
            "Expire a carve (and delete its blocks) when no block came for this long.",
            option="--carve-timeout",
            duration=True,
        ),
    )
    audit_file: Path | None = field(
        default=None,
        metadata=setting(
            "Also append every audit trail entry to this file, one JSON object a line"
            " (made 0600), for a log shipper.",
            option="--audit-file",
        ),
    )
    handshake_timeout: float = field(
        default=10.0,
        metadata=setting(
            "Seconds a client has to complete the TLS handshake.",
            option="--handshake-timeout",
            minimum=0,
            exclusive=True,
        ),
    )
    header_timeout: float = field(
        default=10.0,
        metadata=setting(
            "Seconds a client has to send a request's headers, from its first byte "
            "(from the handshake, for a connection's first request).",
            option="--header-timeout",
            minimum=0,
            exclusive=True,
        ),
    )
    body_timeout: float = field(
        default=30.0,
        metadata=setting(
            "Seconds a request body may go without a byte arriving.",
            option="--body-timeout",
            minimum=0,
            exclusive=True,
        ),
    )
    keep_alive_timeout: int = field(
        default=30,
        metadata=setting(
            "Seconds an idle keep-alive connection stays open.",
            option="--keep-alive-timeout",
            minimum=1,
        ),
    )
    max_connections_per_address: int = field(
        default=256,
        metadata=setting(
            "Concurrent connections from one client address; more are closed at once "
            "(osqueryd holds one or two; NAT'd hosts share an address).",
            option="--max-connections-per-address",
            minimum=1,
        ),
    )
    node_key_ttl: float = field(
        default=60.0, metadata=setting("Seconds a verified node key is trusted from memory.")
    )
    config_refresh: int = field(
        default=60,
        metadata=setting("Seconds between osqueryd config refreshes (printed flags)."),
    )
    distributed_interval: int = field(
        default=10, metadata=setting("Seconds between distributed reads (printed flags).")
    )
    analyst_slots: int = field(
        default=4, metadata=setting("Analyst SQL statements run at once (more answer 503 busy).")
    )
    analyst_timeout: float = field(
        default=10.0, metadata=setting("Seconds one analyst SQL statement may run.")
    )
    analyst_max_bytes: int = field(
        default=16 * MiB,
        metadata=setting("Largest analyst SQL answer (bytes); more is truncated."),
    )

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.home / 'fleet.db'}"

    @property
    def worker_count(self) -> int:
        """``workers``; by default one per core, or half the cores (at least one) where
        judge processes run by default (``judge_process_count``)."""
        if self.workers is not None:
            return self.workers
        if self._default_judges():
            return max(1, _cores() // 2)
        return max(1, _cores() - self.judge_process_count)

    @property
    def judge_process_count(self) -> int:
        """``detection_processes``; by default, when ``workers`` is not given either, one
        per core on PostgreSQL with 2 or more cores: on 2 cores, 1 worker and 2 judge
        processes kept the detection lag lowest of the layouts measured (README, "Fleet
        simulator"). SQLite judges in the workers: its one writer lock
        would queue the kept changes' writes behind every post's."""
        if self.detection_processes is not None:
            return self.detection_processes
        return _cores() if self._default_judges() else 0

    def _default_judges(self) -> bool:
        """Whether judge processes run by default (neither option given)."""
        postgres = self.db_url.startswith("postgresql")
        given = self.workers is not None or self.detection_processes is not None
        return postgres and not given and _cores() >= 2

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    @property
    def context_path(self) -> Path:
        return self.home / "context.json"

    @property
    def tls_dir(self) -> Path:
        return self.home / "tls"


def declared() -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    """Every field of ``Settings`` with its ``Setting``, in declaration order."""
    for f in dataclasses.fields(Settings):
        yield f, f.metadata["setting"]


def declaration(name: str) -> tuple[dataclasses.Field[Any], Setting]:
    """The field ``name`` of ``Settings`` and its ``Setting``."""
    return next((f, s) for f, s in declared() if f.name == name)


class SettingError(ValueError):
    """An option's value the server cannot use; ``option`` names it."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def from_options(options: Mapping[str, Any], **given: Any) -> Settings:
    """``Settings`` from option values as given (a duration as its text), checked in
    declaration order; ``given`` are fields set as values. Raises ``SettingError``."""
    values = dict(given)
    for f, s in declared():
        if f.name not in options:
            continue
        value = options[f.name]
        try:
            if s.duration:
                value = parse_duration(value)
            if s.check is not None:
                s.check(value)
            if s.choices is not None and value not in s.choices:
                raise ValueError(f"{s.option} must be one of {', '.join(s.choices)}")
        except ValueError as exc:
            raise SettingError(s.option or f.name, str(exc)) from exc
        values[f.name] = value
    return Settings(**values)


def default_text(f: dataclasses.Field[Any], s: Setting) -> str:
    """The default as an option takes it (a duration as ``1h``), or as ``default_text`` says."""
    if s.default_text is not None:
        return s.default_text
    if f.default is None or f.default == ():
        return ""
    if s.duration and isinstance(f.default, int):
        return format_duration(f.default)
    return str(f.default)


def settings_table() -> str:
    """The README's table of the settings that can be set: option, environment variable,
    default and meaning, in declaration order."""

    def code(text: str | None) -> str:
        return f"`{text}`" if text else ""

    lines = ["| option | environment | default | what |", "|---|---|---|---|"]
    for f, s in declared():
        if s.option is None and s.env is None:
            continue
        shown = default_text(f, s)
        default = shown if s.default_text is not None else code(shown)
        what = s.help.replace("<", "\\<")  # <home> is not an HTML tag
        lines.append(f"| {code(s.option)} | {code(s.env)} | {default} | {what} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
