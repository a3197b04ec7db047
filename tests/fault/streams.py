"""Simulated osqueryd hosts with osquery's buffering, and the store they must produce.

Each host owns a scripted history: a set of rows (with duplicates, as osquery's
multiset results have) that churns every interval. From it the host derives exactly the
lines osqueryd logs in event format (a counter-0 baseline, then removed-before-added
diffs with counters 1, 2, ...) plus one status line per interval, and sends them as
osqueryd's TLS logger does: buffered, in batches, and deleted from the buffer only when
the server acknowledges the post. Any failure (connection refused or cut, a JSON
``error``) keeps the buffer and the batch is sent again.

The expectation is computed from the script alone, never from the server: at every
interval's time the store must hold exactly that interval's multiset of rows.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from storage.engine import make_engine

QUERY = "pack_fault_processes"
BASE_TIME = 1_700_000_000
STEP = 60  # seconds of host time between intervals


def row_key(row: dict[str, str]) -> str:
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class Script:
    """One host's history: the multiset of rows at each interval's time."""

    identifier: str
    states: list[tuple[int, Counter[str]]] = field(default_factory=list)
    result_lines: list[list[dict[str, Any]]] = field(default_factory=list)  # per interval
    status_lines: list[dict[str, Any]] = field(default_factory=list)  # one per interval

    @classmethod
    def generate(cls, identifier: str, intervals: int, rows: int, seed: int) -> Script:
        rng = random.Random(seed)
        script = cls(identifier)
        next_pid = 100
        current: Counter[str] = Counter()
        for _ in range(rows):
            next_pid += 1
            current[row_key(_process(next_pid, rng))] += 1 + (rng.random() < 0.05)
        for interval in range(intervals):
            t = BASE_TIME + interval * STEP
            removed: Counter[str] = Counter()
            added: Counter[str] = Counter()
            if interval == 0:
                added = Counter(current)
            else:
                for key in rng.sample(sorted(current), k=max(1, len(current) // 20)):
                    removed[key] += 1
                for _ in range(max(1, rows // 20)):
                    next_pid += 1
                    added[row_key(_process(next_pid, rng))] += 1
                current = current - removed + added
            script.states.append((t, Counter(current)))
            script.result_lines.append(_event_lines(identifier, interval, t, removed, added))
            script.status_lines.append(
                {
                    "hostIdentifier": identifier,
                    "calendarTime": "",
                    "unixTime": t,
                    "severity": 0,
                    "filename": "scheduler.cpp",
                    "line": 83,
                    "message": f"Executing scheduled query {QUERY}: interval {interval}",
                    "version": "5.12.1",
                }
            )
        return script


def _process(pid: int, rng: random.Random) -> dict[str, str]:
    name = rng.choice(["bash", "sshd", "python3", "cron", "socat", "nginx"])
    return {"pid": str(pid), "name": name, "cmdline": f"{name} --worker {rng.randrange(10**6)}"}


def _event_lines(
    host: str, counter: int, t: int, removed: Counter[str], added: Counter[str]
) -> list[dict[str, Any]]:
    def line(key: str, action: str) -> dict[str, Any]:
        return {
            "name": QUERY,
            "hostIdentifier": host,
            "calendarTime": "",
            "unixTime": t,
            "epoch": 0,
            "counter": counter,
            "numerics": False,
            "columns": orjson.loads(key),
            "action": action,
        }

    lines = [line(k, "removed") for k, n in sorted(removed.items()) for _ in range(n)]
    lines += [line(k, "added") for k, n in sorted(added.items()) for _ in range(n)]
    return lines


class SimulatedHost(threading.Thread):
    """Plays one script against the server at ``pace`` seconds per interval."""

    def __init__(self, url: str, ca: str, secret: str, script: Script, pace: float) -> None:
        super().__init__(name=f"host-{script.identifier}", daemon=True)
        self.url, self.ca, self.secret = url, ca, secret
        self.script, self.pace = script, pace
        self.node_key: str | None = None
        self.failures = 0
        self.error: str | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._play()
        except Exception as exc:  # reported by the suite, not swallowed
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def _play(self) -> None:
        buffers: dict[str, list[Any]] = {"result": [], "status": []}
        intervals = len(self.script.states)
        produced = 0
        started = time.monotonic()
        with httpx.Client(base_url=self.url, verify=self.ca, timeout=10) as http:
            while produced < intervals or any(buffers.values()):
                due = min(intervals, int((time.monotonic() - started) / self.pace) + 1)
                while produced < due:
                    buffers["result"].extend(self.script.result_lines[produced])
                    buffers["status"].append(self.script.status_lines[produced])
                    produced += 1
                for log_type, buffer in buffers.items():
                    if buffer and self._post_batch(http, log_type, buffer[:512]):
                        del buffer[:512]
                time.sleep(0.05)

    def _post_batch(self, http: httpx.Client, log_type: str, batch: list[Any]) -> bool:
        if self.node_key is None and not self._enroll(http):
            return False
        body = {"node_key": self.node_key, "log_type": log_type, "data": batch}
        answer = self._post(http, "/api/v1/osquery/log", body)
        if answer is None:
            return False
        if answer.get("node_invalid"):
            self.node_key = None
            return False
        return "error" not in answer

    def _enroll(self, http: httpx.Client) -> bool:
        answer = self._post(
            http,
            "/api/v1/osquery/enroll",
            {
                "enroll_secret": self.secret,
                "host_identifier": self.script.identifier,
                "platform_type": "9",
                "host_details": {
                    "system_info": {
                        "uuid": f"uuid-{self.script.identifier}",
                        "hostname": self.script.identifier,
                    },
                    "os_version": {"name": "Debian", "version": "12", "platform": "debian"},
                    "osquery_info": {"version": "5.12.1"},
                },
            },
        )
        self.node_key = answer.get("node_key") if answer else None
        return self.node_key is not None

    def _post(self, http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            response = http.post(
                path, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
            )
            answer: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError):
            self.failures += 1
            return None
        if "error" in answer:
            self.failures += 1
        return answer


@dataclass
class Comparison:
    """How the store differs from the scripts: each list empty when it is right."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    status_lines: list[str] = field(default_factory=list)
    data_loss: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.missing or self.extra or self.duplicated or self.status_lines or self.data_loss
        )

    def summary(self) -> str:
        parts = [f"{len(v)} {k.replace('_', ' ')}" for k, v in vars(self).items() if v]
        examples = [v[0] for v in vars(self).values() if v]
        return "; ".join(parts) + (f" (e.g. {examples[0][:160]})" if examples else "")


def compare(db_url: str, scripts: list[Script]) -> Comparison:
    """Read the store directly and hold it against every script, interval by interval."""
    out = Comparison()
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            for script in scripts:
                host_id = conn.execute(
                    text("SELECT id FROM hosts WHERE host_identifier = :h"),
                    {"h": script.identifier},
                ).scalar()
                if host_id is None:
                    out.missing.append(f"{script.identifier}: never enrolled")
                    continue
                rows = conn.execute(
                    text(
                        "SELECT columns, copies, first_seen, removed_at FROM result_rows"
                        " WHERE host_id = :h AND name = :n"
                    ),
                    {"h": host_id, "n": QUERY},
                ).all()
                _compare_rows(script, rows, out)
                statuses = conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT message) FROM status_logs"
                        " WHERE host_id = :h"
                    ),
                    {"h": host_id},
                ).one()
                if tuple(statuses) != (len(script.status_lines),) * 2:
                    out.status_lines.append(
                        f"{script.identifier}: {statuses[0]} status lines ({statuses[1]}"
                        f" distinct), sent {len(script.status_lines)}"
                    )
                markers = conn.execute(
                    text("SELECT kind, detail FROM data_loss WHERE host_id = :h"), {"h": host_id}
                ).all()
                out.data_loss.extend(f"{script.identifier}: {k} {d}" for k, d in markers)
    finally:
        engine.dispose()
    return out


def _compare_rows(script: Script, rows: list[Any], out: Comparison) -> None:
    """Presence at every interval's time; multiplicity (``copies``) for the rows still
    open, since the store keeps a row's count only while it is present."""
    decoded = [
        (row_key(c if isinstance(c, dict) else orjson.loads(c)), copies, first, removed)
        for c, copies, first, removed in rows
    ]
    for t, expected in script.states:
        holders: Counter[str] = Counter(
            key
            for key, _, first, removed in decoded
            if (first is None or first <= t) and (removed is None or removed > t)
        )
        for key in set(expected) - set(holders):
            out.missing.append(f"{script.identifier} t={t}: {key}")
        for key in set(holders) - set(expected):
            out.extra.append(f"{script.identifier} t={t}: {key}")
        out.duplicated.extend(
            f"{script.identifier} t={t}: {k} in {n} open rows" for k, n in holders.items() if n > 1
        )
    final = script.states[-1][1]
    open_copies = Counter({key: copies for key, copies, _, removed in decoded if removed is None})
    for key in set(final) | set(open_copies):
        if final[key] != open_copies[key]:
            out.missing.append(
                f"{script.identifier} now: {key} x{open_copies[key]}, expected x{final[key]}"
            )
