"""The baseline: DET0493's mutable elements as one readable YAML file kept in git.

ATT&CK names the knobs a deployment tunes; this module gives each a section:

``socket_paths`` (SocketPathBaseline)
    unix socket paths that are expected, optionally with the processes allowed to serve
    them. A feed or listener on such a path is not evidence; ``/run/systemd/journal/stdout``
    on a service's stdout is the classic case.
``fifo_access`` (FIFOAccessPatterns)
    FIFO paths that the named processes are expected to open (container stdio FIFOs, the
    make jobserver FIFO, prompt helpers).
``parent_child`` (AllowedParentChildPairs)
    parent/child pairs that are normal (sshd -> shell, make -> sh). A matching rule makes
    the path quiet only while no unexpected IPC feeds the child or its parent: an allowed
    pair never hides a shell whose stdin is a FIFO from someone else.
``pipe_names`` (PipeNamePattern)
    Windows named pipe patterns of known tooling, with exceptions.
``learned``
    path keys accepted as known, fleet-wide or per host (``Detector`` state can be exported
    here, reviewed and committed).

Patterns are shell globs (``fnmatch``): ``*`` also matches ``/``. A file that says
``extends: default`` adds its entries to the shipped defaults
(``default_baseline.yaml``) instead of replacing them. Unknown keys are errors, so a
misspelt section cannot be silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml

from fleetctl.detection.globs import any_glob
from fleetctl.detection.paths import ExecutionPath

DEFAULT_PATH = Path(__file__).with_name("default_baseline.yaml")
FORMAT_VERSION = 1


class BaselineError(ValueError):
    """A baseline file that cannot be read: bad YAML, unknown keys, wrong types."""


@dataclass(frozen=True)
class SocketPathRule:
    """An expected unix socket path; ``owners`` (if any) may serve it."""

    path: str
    owners: tuple[str, ...] = ()
    note: str = ""

    def matches(self, path: str, server_names: Iterable[str] | None = None) -> bool:
        if not fnmatchcase(path, self.path):
            return False
        return server_names is None or not self.owners or any_glob(self.owners, server_names)


@dataclass(frozen=True)
class FifoAccessRule:
    """A FIFO path that ``processes`` (any process if empty) are expected to open."""

    path: str
    processes: tuple[str, ...] = ()
    note: str = ""

    def matches(self, path: str, process_names: Iterable[str]) -> bool:
        return fnmatchcase(path, self.path) and (
            not self.processes or any_glob(self.processes, process_names)
        )


@dataclass(frozen=True)
class ParentChildRule:
    """An allowed parent/child pair, optionally narrowed by lineage, cmdline and channel.

    ``ancestor`` matches any process above the parent (a CI runner somewhere up the tree);
    cmdline globs match the normalised command line; ``channels`` lists the stdio kinds
    the child may have; ``feeders`` names processes whose pipe into the child (a download
    or a plain foreign pipe, never an observed FIFO or socket) is fine.
    """

    name: str
    parent: tuple[str, ...] = ("*",)
    child: tuple[str, ...] = ("*",)
    grandparent: tuple[str, ...] = ()
    ancestor: tuple[str, ...] = ()
    parent_cmdline: tuple[str, ...] = ()
    child_cmdline: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    feeders: tuple[str, ...] = ()
    platform: str = ""
    note: str = ""

    def matches(self, path: ExecutionPath) -> bool:
        fold = path.platform == "windows"
        if self.platform and self.platform != path.platform:
            return False
        parent_names = path.parent.names if path.parent else ("?",)
        if not (
            any_glob(self.parent, parent_names, fold=fold)
            and any_glob(self.child, path.child.names, fold=fold)
        ):
            return False
        if self.grandparent and not (
            path.grandparent and any_glob(self.grandparent, path.grandparent.names, fold=fold)
        ):
            return False
        above = [n for ref in path.lineage[2:] for n in ref.names]
        if self.ancestor and not any_glob(self.ancestor, above, fold=fold):
            return False
        if self.parent_cmdline and not (
            path.parent and any_glob(self.parent_cmdline, [path.parent.shape])
        ):
            return False
        if self.child_cmdline and not any_glob(self.child_cmdline, [path.child.shape]):
            return False
        return not self.channels or set(path.stdio_kinds()) <= set(self.channels)


@dataclass(frozen=True)
class PipeNameRule:
    """A named-pipe pattern of known tooling; servers in ``except_servers`` are fine."""

    pattern: str
    except_servers: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class PipeNamePatterns:
    """PipeNamePattern: tooling patterns and benign look-alikes, matched without case."""

    suspicious: tuple[PipeNameRule, ...] = ()
    allowed: tuple[str, ...] = ()

    def verdict(self, name: str, server_names: Iterable[str] = ()) -> PipeNameRule | None:
        """The tooling rule a pipe name matches, or None (also when explicitly allowed)."""
        if any_glob(self.allowed, [name], fold=True):
            return None
        servers = tuple(server_names)
        for rule in self.suspicious:
            if any_glob([rule.pattern], [name], fold=True) and not (
                servers and any_glob(rule.except_servers, servers, fold=True)
            ):
                return rule
        return None


@dataclass
class LearnedKeys:
    """Path keys accepted as known on the whole fleet or on one host."""

    fleet: set[str] = field(default_factory=set)
    hosts: dict[str, set[str]] = field(default_factory=dict)

    def knows(self, host: str, key: str) -> bool:
        return key in self.fleet or key in self.hosts.get(host, set())

    def update(self, other: LearnedKeys) -> None:
        self.fleet |= other.fleet
        for host, keys in other.hosts.items():
            self.hosts.setdefault(host, set()).update(keys)


@dataclass
class Baseline:
    """All mutable elements; ``Baseline.default()`` is the shipped file."""

    socket_paths: tuple[SocketPathRule, ...] = ()
    fifo_access: tuple[FifoAccessRule, ...] = ()
    parent_child: tuple[ParentChildRule, ...] = ()
    pipe_names: PipeNamePatterns = field(default_factory=PipeNamePatterns)
    learned: LearnedKeys = field(default_factory=LearnedKeys)

    # -- matching --------------------------------------------------------------------

    def expected_socket(
        self, path: str, server_names: Iterable[str] | None = None
    ) -> SocketPathRule | None:
        names = None if server_names is None else tuple(server_names)
        return next((r for r in self.socket_paths if r.matches(path, names)), None)

    def expected_fifo(self, path: str, process_names: Iterable[str]) -> FifoAccessRule | None:
        names = tuple(process_names)
        return next((r for r in self.fifo_access if r.matches(path, names)), None)

    def allowed_pair(self, path: ExecutionPath) -> ParentChildRule | None:
        return next((r for r in self.parent_child if r.matches(path)), None)

    # -- files -----------------------------------------------------------------------

    @classmethod
    def default(cls) -> Baseline:
        return cls.load(DEFAULT_PATH)

    @classmethod
    def load(cls, path: str | Path) -> Baseline:
        try:
            return cls.loads(Path(path).read_text(encoding="utf-8"))
        except BaselineError as error:
            raise BaselineError(f"{path}: {error}") from error

    @classmethod
    def loads(cls, text: str) -> Baseline:
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise BaselineError(f"not valid YAML: {error}") from error
        if not isinstance(doc, dict):
            raise BaselineError("a baseline is a mapping of sections")
        _only(
            doc,
            {
                "version",
                "extends",
                "socket_paths",
                "fifo_access",
                "parent_child",
                "pipe_names",
                "learned",
            },
            "baseline",
        )
        if doc.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise BaselineError(f"unsupported version {doc.get('version')!r}")
        pipes = doc.get("pipe_names") or {}
        _only(pipes, {"suspicious", "allowed"}, "pipe_names")
        learned = doc.get("learned") or {}
        _only(learned, {"fleet", "hosts"}, "learned")
        base = cls(
            socket_paths=tuple(
                _rule(SocketPathRule, e, "socket_paths") for e in _list(doc, "socket_paths")
            ),
            fifo_access=tuple(
                _rule(FifoAccessRule, e, "fifo_access") for e in _list(doc, "fifo_access")
            ),
            parent_child=tuple(
                _rule(ParentChildRule, e, "parent_child") for e in _list(doc, "parent_child")
            ),
            pipe_names=PipeNamePatterns(
                suspicious=tuple(
                    _rule(
                        PipeNameRule,
                        {"pattern": e} if isinstance(e, str) else e,
                        "pipe_names.suspicious",
                    )
                    for e in _list(pipes, "suspicious")
                ),
                allowed=tuple(str(e) for e in _list(pipes, "allowed")),
            ),
            learned=LearnedKeys(
                fleet={str(k) for k in _list(learned, "fleet")},
                hosts={
                    str(h): {str(k) for k in keys or []}
                    for h, keys in (learned.get("hosts") or {}).items()
                },
            ),
        )
        extends = doc.get("extends")
        if extends is None:
            return base
        if extends != "default":
            raise BaselineError(f"extends: only 'default' is supported, not {extends!r}")
        return cls.default().combined(base)

    def combined(self, other: Baseline) -> Baseline:
        """This baseline's entries followed by ``other``'s."""
        learned = LearnedKeys()
        learned.update(self.learned)
        learned.update(other.learned)
        return Baseline(
            socket_paths=self.socket_paths + other.socket_paths,
            fifo_access=self.fifo_access + other.fifo_access,
            parent_child=self.parent_child + other.parent_child,
            pipe_names=PipeNamePatterns(
                self.pipe_names.suspicious + other.pipe_names.suspicious,
                self.pipe_names.allowed + other.pipe_names.allowed,
            ),
            learned=learned,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "socket_paths": [_plain(r) for r in self.socket_paths],
            "fifo_access": [_plain(r) for r in self.fifo_access],
            "parent_child": [_plain(r) for r in self.parent_child],
            "pipe_names": {
                "suspicious": [
                    r.pattern if not (r.except_servers or r.note) else _plain(r)
                    for r in self.pipe_names.suspicious
                ],
                "allowed": list(self.pipe_names.allowed),
            },
            "learned": {
                "fleet": sorted(self.learned.fleet),
                "hosts": {h: sorted(k) for h, k in sorted(self.learned.hosts.items())},
            },
        }

    def dumps(self) -> str:
        return yaml.safe_dump(
            self.to_dict(), sort_keys=False, default_flow_style=None, width=100, allow_unicode=True
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.dumps(), encoding="utf-8")


def _only(doc: Mapping[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(doc, Mapping):
        raise BaselineError(f"{where}: expected a mapping")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise BaselineError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}")


def _list(doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key) or []
    if not isinstance(value, list):
        raise BaselineError(f"{key}: expected a list")
    return value


def _rule(kind: Any, entry: Any, where: str) -> Any:
    """A rule dataclass from a mapping; scalars become 1-tuples where a tuple is expected."""
    names = {f.name: f for f in fields(kind)}
    _only(entry, set(names), where)
    required = [f.name for f in fields(kind) if f.default is MISSING and f.name not in entry]
    if required:
        shown = ", ".join(f"{k}={v}" for k, v in entry.items())
        raise BaselineError(f"{where}: the entry ({shown}) needs {' and '.join(required)}")
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if names[key].type.startswith("tuple"):
            items = value if isinstance(value, list) else [value]
            values[key] = tuple(str(v) for v in items)
        else:
            values[key] = str(value)
    try:
        return kind(**values)
    except TypeError as error:
        raise BaselineError(f"{where}: {error}") from error


def _plain(rule: Any) -> dict[str, Any]:
    """A rule as YAML-ready data without the fields left at their defaults."""
    out: dict[str, Any] = {}
    for f in fields(rule):
        value = getattr(rule, f.name)
        if value == f.default:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
