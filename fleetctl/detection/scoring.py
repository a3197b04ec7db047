"""Score a new execution path: points per signal, a severity, and the reasons in words.

Signals (points in ``WEIGHTS``), each counted once per path:

* what the child is: a shell, an interpreter or an admin tool (``catalog``);
* IPC into its stdio from outside its lineage (``ExecutionPath.feeds``): a FIFO, a unix
  or TCP socket, a pipe relayed by a process that holds one or by a downloader, or a
  plain pipe from an unrelated process; on an expected path (``socket_paths``,
  ``fifo_access``) it is not counted;
* where: an unexpected FIFO or socket in /tmp, /dev/shm or /var/tmp;
* how the parent relates: an IPC server, a relay tool (socat, ncat), itself fed by IPC,
  or a parent that has never started this class of child before;
* platform chains: Office -> LOLBin (DDE/OLE), DCOM launcher or WmiPrvSE -> interpreter,
  macOS Office or osascript -> shell, XPC work done for another app, named pipes of known
  tooling served by the child or parent;
* rarity across the fleet (1 - hosts_with_key / hosts_total), which only ranks paths that
  are already medium or worse.

A matching ``parent_child`` rule of the baseline silences the pair; it keeps only signals
about a third process (``BEYOND_THE_PAIR``), and it does not apply at all while an
unexpected IPC feed reaches the child or its parent.
Severity: critical >= 80, high >= 60, medium >= 40, low >= 20, else info.

Two signals depend on what was seen before (``NOVELTY_REASONS``): a parent that never
started such a child, and rarity. Everything else is a fact of the path itself, true
however long the host has been watched; those points are ``Score.intrinsic``. Learning
trusts only novelty, so a path whose intrinsic points alone reach medium (stdio fed from
outside its lineage, a FIFO or socket in a temp directory, a relay parent, a tooling
pipe name, an Office/DDE chain, a shell on a socket) is never learned silently.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from fleetctl.detection import catalog
from fleetctl.detection.baseline import Baseline
from fleetctl.detection.paths import KIND_WORDS, ExecutionPath, Feed

SEVERITIES = ("info", "low", "medium", "high", "critical")
_THRESHOLDS = ((80, "critical"), (60, "high"), (40, "medium"), (20, "low"))
TEMP_DIRS = ("/tmp/", "/dev/shm/", "/var/tmp/", "/private/tmp/", "/private/var/tmp/")

WEIGHTS: dict[str, int] = {
    "child_shell": 25,
    "child_interpreter": 20,
    "child_admin_tool": 15,
    "feed_fifo": 30,
    "feed_unix": 30,
    "feed_tcp": 35,
    "feed_udp": 35,
    "feed_socket": 25,
    "relay_fifo": 25,
    "relay_unix": 25,
    "relay_tcp": 25,
    "relay_download": 25,
    "foreign_pipe": 15,
    "output_relay": 15,
    "temp_location": 15,
    "interactive_no_tty": 15,
    "parent_ipc_server": 15,
    "parent_relay_tool": 25,
    "parent_fed_by_ipc": 20,
    "parent_new_child_class": 15,
    "child_temp_server": 15,
    "tool_pipe": 40,
    "office_chain": 45,
    "office_grandparent": 30,
    "dcom_chain": 25,
    "wmi_chain": 30,
    "macos_office_chain": 40,
    "macos_office_responsible": 40,
    "xpc_responsible": 15,
    "rarity": 10,
}
# Signals about a third process (the app an XPC job works for, an Office grandparent, a
# pipe the process serves): an allowed parent/child pair does not vouch for those.
BEYOND_THE_PAIR = frozenset(
    {"tool_pipe", "xpc_responsible", "macos_office_responsible", "office_grandparent"}
)
# Signals that only exist because of what the host and fleet showed before: whoever is
# present while a host learns shapes them, so learning must not rest on anything else.
NOVELTY_REASONS = frozenset({"parent_new_child_class", "rarity"})
_INTERACTIVE = re.compile(r"^-[A-Za-z]*i[A-Za-z]*$")


@dataclass(frozen=True)
class Prevalence:
    """How many of the fleet's hosts have shown a path key."""

    hosts_with_key: int
    hosts_total: int

    @property
    def rarity(self) -> float:
        if self.hosts_total <= 0:
            return 0.0
        return max(0.0, 1.0 - self.hosts_with_key / self.hosts_total)


@dataclass(frozen=True)
class Reason:
    """One signal: a stable code, the points it added and a sentence for the analyst."""

    code: str
    points: int
    text: str

    @property
    def novelty(self) -> bool:
        """Whether the signal depends on what was seen before (``NOVELTY_REASONS``)."""
        return self.code in NOVELTY_REASONS

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "points": self.points,
            "text": self.text,
            "novelty": self.novelty,
        }


@dataclass(frozen=True)
class Score:
    score: int
    severity: str
    reasons: tuple[Reason, ...]
    child_class: str | None = None
    allowed_by: str | None = None

    @property
    def intrinsic(self) -> int:
        """Points of the reasons that hold whatever was seen before (no novelty)."""
        return min(100, sum(r.points for r in self.reasons if not r.novelty))

    @property
    def intrinsic_severity(self) -> str:
        return severity_for(self.intrinsic)


def severity_for(score: int) -> str:
    return next((name for floor, name in _THRESHOLDS if score >= floor), "info")


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


class _Signals:
    """Collects reasons, each code once, and adds up their points."""

    def __init__(self) -> None:
        self.reasons: dict[str, Reason] = {}

    def add(self, code: str, text: str, points: int | None = None) -> None:
        if code not in self.reasons:
            self.reasons[code] = Reason(
                code, WEIGHTS.get(code, 0) if points is None else points, text
            )

    @property
    def total(self) -> int:
        return sum(r.points for r in self.reasons.values())


def _in_temp(path: str) -> bool:
    return path.startswith(TEMP_DIRS) or any(path == d.rstrip("/") for d in TEMP_DIRS)


def _is_expected(feed: Feed, path: ExecutionPath, baseline: Baseline) -> bool:
    """Whether the baseline expects every FIFO or socket path this feed carries."""
    if not feed.paths or feed.kind not in ("fifo", "unix"):
        return False
    partner = feed.partner.process if feed.partner else None
    if feed.kind == "unix":
        # Only a direct peer is the socket's server; a relay merely holds a connection.
        server = partner.names if partner and feed.route == "direct" else None
        return all(baseline.expected_socket(p, server) for p in feed.paths)
    holder = partner.names if partner and feed.route == "relay" else path.child.names
    return all(baseline.expected_fifo(p, holder) for p in feed.paths)


def unexpected_feeds(
    feeds: Collection[Feed], path: ExecutionPath, baseline: Baseline
) -> list[Feed]:
    return [f for f in feeds if not _is_expected(f, path, baseline)]


def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _feed_signals(out: _Signals, feeds: list[Feed], child_class: str | None) -> None:
    """Input channels always count; output channels only for a shell, interpreter or tool
    (whose output leaving through someone else's FIFO or socket is a reverse shell)."""
    for feed in feeds:
        what = KIND_WORDS.get(feed.kind, feed.kind)
        if feed.direction == "out":
            if child_class:
                out.add(
                    "output_relay",
                    f"output of the {child_class} leaves through "
                    f"another process: {feed.describe()}",
                )
        elif feed.route == "direct":
            out.add(
                f"feed_{feed.kind}",
                f"stdio is {_article(what)} reaching outside its lineage: {feed.describe()}",
            )
        elif feed.route == "relay":
            out.add(f"relay_{feed.kind}", f"stdin relayed from {_article(what)}: {feed.describe()}")
        else:
            out.add("foreign_pipe", f"stdio piped from an unrelated process: {feed.describe()}")


def _interactive_without_tty(path: ExecutionPath) -> bool:
    words = path.child.cmdline.split()[1:]
    flags = []
    for word in words:
        if not word.startswith("-") or word in ("-c", "--"):
            break
        flags.append(word)
    interactive = any(_INTERACTIVE.match(f) for f in flags) or "--login" in flags
    return (
        interactive
        and bool(path.channels)
        and not any(c.kind in ("tty", "pty") for c in path.channels)
    )


def _lineage_signals(
    out: _Signals,
    path: ExecutionPath,
    child_class: str,
    parent_feeds: list[Feed],
    history: Collection[str] | None,
) -> None:
    parent = path.parent
    if parent is None:
        return
    listeners = [
        x for x in path.parent_listeners if not x.startswith("pipe:") or path.platform == "windows"
    ]
    if listeners:
        out.add(
            "parent_ipc_server",
            f"parent {parent.label} is an IPC server "
            f"({', '.join(listeners[:3])}) and started "
            f"{_article(child_class)}",
        )
    if catalog.matches_any(parent.names, catalog.RELAY_TOOLS):
        out.add(
            "parent_relay_tool",
            f"parent {parent.label} is a socket relay tool and started {_article(child_class)}",
        )
    if parent_feeds:
        out.add(
            "parent_fed_by_ipc",
            f"parent {parent.label} is itself fed by IPC: "
            + "; ".join(f.describe() for f in parent_feeds[:2]),
        )
    # A shell starting a shell (or a tool) is the most ordinary thing there is; the signal
    # is for services and applications that turn out to start one.
    parent_is_shell = catalog.classify(parent.names, path.platform) == catalog.SHELL
    if history is not None and not parent_is_shell:
        same = [n for n in history if catalog.classify([n], path.platform) == child_class]
        if not same:
            seen = ", ".join(sorted(history)[:5]) or "nothing"
            out.add(
                "parent_new_child_class",
                f"{parent.basename} never started {_article(child_class)} before (seen: {seen})",
            )


def _platform_signals(out: _Signals, path: ExecutionPath, child_class: str | None) -> None:
    parent, child = path.parent, path.child
    if path.platform == "windows":
        if (
            parent
            and catalog.matches_any(parent.names, catalog.OFFICE_PARENTS)
            and catalog.matches_any(child.names, catalog.OFFICE_LOLBINS)
        ):
            out.add(
                "office_chain",
                f"Office application {parent.label} started "
                f"{child.label} (DDE/OLE execution chain)",
            )
        elif (
            path.grandparent
            and child_class
            and catalog.matches_any(path.grandparent.names, catalog.OFFICE_PARENTS)
        ):
            out.add(
                "office_grandparent",
                f"{child.label} runs under Office application {path.grandparent.label}",
            )
        if (
            parent
            and child_class
            and "svchost.exe" in parent.names
            and "dcomlaunch" in parent.cmdline.lower()
        ):
            out.add("dcom_chain", f"{child.label} was started by the DCOM launcher")
        elif child_class and re.search(r"[-/]embedding\b", child.cmdline.lower()):
            out.add("dcom_chain", f"{child.label} was activated as a COM server (-Embedding)")
        if parent and child_class and "wmiprvse.exe" in parent.names:
            out.add("wmi_chain", f"WMI provider host started {child.label}")
    if path.platform == "darwin":
        if catalog.matches_any(child.names, catalog.MACOS_OFFICE_CHILDREN):
            for code, ref in (
                ("macos_office_chain", parent),
                ("macos_office_responsible", path.responsible),
            ):
                if ref is not None and (
                    catalog.matches_any([ref.path], catalog.MACOS_OFFICE_PATHS)
                    or "osascript" in ref.names
                ):
                    out.add(code, f"{ref.label} (Office or AppleScript) led to {child.label}")
        if path.responsible is not None and child_class:
            out.add(
                "xpc_responsible",
                f"{child.label} ran on behalf of {path.responsible.label} (XPC or launchd)",
            )


def _pipe_signals(out: _Signals, path: ExecutionPath, baseline: Baseline) -> None:
    for who, listeners in (("child", path.child_listeners), ("parent", path.parent_listeners)):
        ref = path.child if who == "child" else path.parent
        for item in listeners:
            if not item.startswith("pipe:"):
                continue
            rule = baseline.pipe_names.verdict(item[5:], ref.names if ref else ())
            if rule is not None:
                note = f": {rule.note}" if rule.note else ""
                out.add(
                    "tool_pipe",
                    f"{who} serves named pipe {item[5:]!r}, a known tooling "
                    f"pattern ({rule.pattern}{note})",
                )


def _location_signals(
    out: _Signals,
    path: ExecutionPath,
    baseline: Baseline,
    child_class: str | None,
    feeds: list[Feed],
    parent_feeds: list[Feed],
) -> None:
    """Unexpected FIFOs and sockets in /tmp, /dev/shm, /var/tmp: where anyone can put one."""
    temp_servers = (
        []
        if path.forked
        else [
            x
            for x in path.child_listeners
            if x.startswith("unix:")
            and _in_temp(x[5:])
            and baseline.expected_socket(x[5:], path.child.names) is None
        ]
    )
    if temp_servers:
        out.add(
            "child_temp_server",
            f"child serves a unix socket in a shared temp directory: {', '.join(temp_servers[:3])}",
        )
    places = [p for f in feeds if f.direction == "in" or child_class for p in f.paths]
    if child_class:
        places += [p for f in parent_feeds for p in f.paths]
        server = path.parent.names if path.parent else None
        places += [
            x[5:]
            for x in path.parent_listeners
            if x.startswith("unix:") and baseline.expected_socket(x[5:], server) is None
        ]
    temp = [p for p in places if _in_temp(p)]
    if temp:
        out.add(
            "temp_location",
            f"FIFO or socket in a shared temp directory: {', '.join(dict.fromkeys(temp))}",
        )


def score_path(
    path: ExecutionPath,
    baseline: Baseline,
    *,
    prevalence: Prevalence | None = None,
    parent_history: Collection[str] | None = None,
) -> Score:
    """Score a new path.

    ``parent_history`` is the set of child basenames seen before under this parent's
    basename (None when the parent has no history, which adds nothing).
    """
    out = _Signals()
    # A fork that did not exec was not started by its parent: only its channels count.
    child_class = None if path.forked else catalog.classify(path.child.names, path.platform)
    if child_class:
        code = "child_" + child_class.replace(" ", "_")
        out.add(code, f"child {path.child.label} is {_article(child_class)}")
    feeds = unexpected_feeds(path.feeds, path, baseline)
    parent_feeds = [
        f for f in unexpected_feeds(path.parent_feeds, path, baseline) if f.direction == "in"
    ]
    _feed_signals(out, feeds, child_class)
    if child_class:
        _lineage_signals(out, path, child_class, parent_feeds, parent_history)
        if child_class == catalog.SHELL and _interactive_without_tty(path):
            out.add("interactive_no_tty", "interactive shell (-i) without a terminal")
    _location_signals(out, path, baseline, child_class, feeds, parent_feeds)
    _platform_signals(out, path, child_class)
    _pipe_signals(out, path, baseline)

    rule = baseline.allowed_pair(path)
    allowed_by = None
    if rule is not None and _rule_covers(rule.feeders, feeds) and not parent_feeds:
        allowed_by = rule.name
        out.reasons = {c: r for c, r in out.reasons.items() if c in BEYOND_THE_PAIR}
        out.add("allowed", f"allowed by baseline rule {rule.name!r}", 0)
    if out.total >= 40 and prevalence is not None and prevalence.hosts_total > 1:
        points = round(WEIGHTS["rarity"] * prevalence.rarity)
        if points:
            out.add(
                "rarity",
                f"seen on {prevalence.hosts_with_key} of {prevalence.hosts_total} hosts",
                points,
            )
    score = min(100, out.total)
    return Score(
        score=score,
        severity=severity_for(score),
        reasons=tuple(out.reasons.values()),
        child_class=child_class,
        allowed_by=allowed_by,
    )


def _rule_covers(feeders: Collection[str], feeds: list[Feed]) -> bool:
    """True if every remaining feed is a download or plain pipe from an allowed feeder."""
    return all(
        f.route in ("relay", "foreign")
        and f.kind in ("download", "pipe")
        and f.partner
        and f.partner.process
        and catalog.matches_any(f.partner.process.names, feeders)
        for f in feeds
    )
