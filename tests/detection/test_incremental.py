"""Incremental detection equals a from-scratch judgement after every batch.

Random hosts (``ipc_streams.IpcHost``) evolve batch by batch; each batch's opened and
closed rows move a ``HostDetection`` forward, and after each the test builds the host
from scratch (``HostSnapshot`` over all current rows, ``build_paths``, a ``Detector`` on
a copy of the same state) and requires the same paths, and the same findings for the keys
the incremental run judged, with no key left unjudged that a full run would find new.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import replace

import pytest

from fleetctl.detection import Baseline, DetectionState, Detector, HostSnapshot, build_paths
from fleetctl.detection.incremental import HostDetection, Update
from fleetctl.detection.paths import ExecutionPath
from storage.results import ChangedRow
from storage.runs import row_hash
from tests.detection.ipc_streams import EVENT_QUERIES, QUERIES, IpcHost, Row

WINDOW = 300
LEARNING = 200
PACK = "pack_ipc-telemetry_"


def normalized(paths: Iterable[ExecutionPath]) -> dict[int, ExecutionPath]:
    """Paths by pid, without the judgement time (a kept path keeps the time it was built)."""
    return {p.child.pid: replace(p, observed_at=None) for p in paths}


class Judge:
    """One host judged incrementally, and the same host judged from scratch beside it."""

    def __init__(self, host: str = "h") -> None:
        self.host = host
        self.baseline = Baseline.default()
        self.state = DetectionState()
        self.incremental = HostDetection(host, events=EVENT_QUERIES, window=WINDOW)
        self.partial = 0  # batches that judged fewer keys than a full judgement

    def check(self, update: Update, current: list[tuple[str, list[Row]]], at: int) -> None:
        snap = HostSnapshot.from_queries(self.host, current, observed_at=float(at))
        full_paths = build_paths(snap)
        assert normalized(self.incremental.paths.values()) == normalized(full_paths)
        before = copy.deepcopy(self.state)
        full = Detector(self.baseline, before, learning_window=LEARNING).detect(full_paths, at)
        group = self.incremental.group(update.keys, at)
        # As the server judges: paths not built again, under a key judged before, are
        # passed as unchanged and not scored again; the findings must not differ.
        unchanged = self.incremental.unchanged(group, update)
        mine = Detector(self.baseline, self.state, learning_window=LEARNING).detect(
            group, at, unchanged=unchanged
        )
        self.incremental.judged(update.keys, at)
        assert [f.to_dict() for f in mine] == [f.to_dict() for f in full if f.key in update.keys]
        assert not [f.key for f in full if f.key not in update.keys and f.is_new]
        assert set(self.state.hosts[self.host].keys) == set(before.hosts[self.host].keys)
        assert set(self.state.findings) == set(before.findings)
        assert self.state.parents == before.parents
        self.partial += len(update.keys) < len({p.path_key() for p in full_paths})


def replay(seed: int, batches: int) -> Judge:
    """Feed one random host's batches to a ``Judge``; returns it for its counts."""
    host = IpcHost(seed)
    judge = Judge()
    # Queries run on their own intervals, so one query's rows can be stale against
    # another's (a pipe row naming a pid that lineage already shows reused).
    every = {q: host.rng.choice((1, 1, 2, 3)) for q in QUERIES}
    previous: dict[str, dict[str, Row]] = {}
    events: list[tuple[Row, int]] = []
    for batch in range(batches):
        if batch:
            host.step()
        at = host.now
        rows = host.rows()
        for query in QUERIES:
            if query in EVENT_QUERIES:
                continue
            if batch % every[query]:
                rows[query] = list(previous[query].values())
                continue
            now = {row_hash(r): r for r in rows[query]}
            old = previous.get(query, {})
            judge.incremental.change(
                PACK + query,
                query,
                [ChangedRow(h, r, at) for h, r in now.items() if h not in old],
                [ChangedRow(h, r, None) for h, r in old.items() if h not in now],
            )
            previous[query] = now
        fresh = host.take_events()
        events += [(r, at) for r in fresh]
        judge.incremental.change(
            PACK + "process_exec_events",
            "process_exec_events",
            [ChangedRow(row_hash(r), r, at) for r in fresh],
            [],
        )
        update = judge.incremental.update(at) if batch else judge.incremental.full_rebuild(at)
        recent = [r for r, t in events if t >= at - WINDOW]
        current = sorted(
            [(q, rows[q]) for q in QUERIES if q not in EVENT_QUERIES]
            + [("process_exec_events", recent)]
        )
        current = [(q, sorted(r, key=row_hash)) for q, r in current]
        judge.check(update, current, at)
    return judge


@pytest.mark.parametrize("seed", range(16))
def test_incremental_paths_and_findings_equal_a_full_judgement(seed: int) -> None:
    judge = replay(seed, 20)
    assert judge.partial > 0  # the batches did not all fall back to judging everything


def test_a_batch_without_changes_judges_nothing() -> None:
    judge = replay(7, 3)
    update = judge.incremental.update(judge.incremental.at + 1)
    assert update.keys == frozenset() and not update.full


def test_exec_events_age_out_of_the_window() -> None:
    host = IpcHost(3)
    incremental = HostDetection("h", events=EVENT_QUERIES, window=WINDOW)
    fresh = host.take_events()
    incremental.change(
        PACK + "process_exec_events",
        "process_exec_events",
        [ChangedRow(row_hash(r), r, host.now) for r in fresh],
        [],
    )
    incremental.full_rebuild(host.now)
    assert incremental.row_count() == len(fresh)
    incremental.update(host.now + WINDOW + 1)
    assert incremental.row_count() == 0


def test_a_reused_pid_drops_the_stale_rows_that_name_it_in_other_processes() -> None:
    """A pipe row of q names p with p's old start time: when lineage shows p reused, the
    row (unchanged itself) no longer counts, so q's stdio is parsed again too."""

    def lineage(pid: int, start: int, name: str) -> Row:
        return {
            "pid": str(pid),
            "parent": "1",
            "start_time": str(start),
            "name": name,
            "path": f"/usr/bin/{name}",
            "cmdline": name,
            "uid": "0",
            "euid": "0",
        }

    pipe = {
        "pid": "20",
        "name": "sh",
        "path": "/usr/bin/sh",
        "start_time": "100",
        "fd": "0",
        "mode": "r",
        "inode": "77",
        "type": "anonymous",
        "partner_pid": "30",
        "partner_name": "nc",
        "partner_path": "/usr/bin/nc",
        "partner_start_time": "200",
        "partner_fd": "1",
        "partner_mode": "w",
    }
    rows = {
        "process_lineage": [lineage(20, 100, "sh"), lineage(30, 200, "nc")],
        "pipe_partners": [pipe],
    }
    incremental = HostDetection("h")
    for query, items in rows.items():
        incremental.change(PACK + query, query, [ChangedRow(row_hash(r), r, 1) for r in items], [])
    incremental.full_rebuild(1)
    assert incremental.paths[20].channels[0].partners[0].pid == 30
    reused = lineage(30, 900, "curl")
    old = rows["process_lineage"][1]
    incremental.change(
        PACK + "process_lineage",
        "process_lineage",
        [ChangedRow(row_hash(reused), reused, 2)],
        [ChangedRow(row_hash(old), old, 1)],
    )
    update = incremental.update(2)
    expected = build_paths(
        HostSnapshot.from_queries(
            "h",
            [("pipe_partners", [pipe]), ("process_lineage", [rows["process_lineage"][0], reused])],
            observed_at=2.0,
        )
    )
    assert normalized(incremental.paths.values()) == normalized(expected)
    assert incremental.paths[20].channels == ()
    assert 20 in update.changed


def test_a_replaced_pool_worker_leaves_its_siblings_unscored_and_the_findings_equal() -> None:
    """A master under systemd whose interpreter workers share one key: one is replaced.
    The others are passed as unchanged, and the findings are those of judging all."""

    def lineage(pid: int, parent: int, name: str, cmdline: str) -> Row:
        return {
            "pid": str(pid),
            "parent": str(parent),
            "start_time": str(100 + pid),
            "name": name,
            "path": f"/usr/bin/{name}",
            "cmdline": cmdline,
            "uid": "33",
            "euid": "33",
        }

    tree = [lineage(1, 0, "systemd", "/sbin/init"), lineage(10, 1, "php-fpm", "php-fpm: master")]
    workers = {pid: lineage(pid, 10, "python3", f"python3 job.py {pid}") for pid in range(11, 17)}
    host, name = HostDetection("h", events=EVENT_QUERIES, window=WINDOW), PACK + "process_lineage"
    rows = [*tree, *workers.values()]
    host.change(name, "process_lineage", [ChangedRow(row_hash(r), r, 1000) for r in rows], [])
    first = host.full_rebuild(1000)
    state = DetectionState()
    detector = Detector(Baseline.default(), state, learning_window=0)
    detector.detect(host.group(first.keys, 1000), 1000)
    host.judged(first.keys, 1000)

    gone, fresh = workers[13], lineage(20, 10, "python3", "python3 job.py 20")
    host.change(
        name,
        "process_lineage",
        [ChangedRow(row_hash(fresh), fresh, 1060)],
        [ChangedRow(row_hash(gone), gone, None)],
    )
    update = host.update(1060)
    group = host.group(update.keys, 1060)
    unchanged = host.unchanged(group, update)
    assert sorted(p.child.pid for p in unchanged) == [11, 12, 14, 15, 16]
    every = Detector(Baseline.default(), copy.deepcopy(state), learning_window=0)
    expected = every.detect(group, 1060)
    found = Detector(Baseline.default(), state, learning_window=0).detect(
        group, 1060, unchanged=unchanged
    )
    assert [f.to_dict() for f in found] == [f.to_dict() for f in expected]
    assert not host.unchanged(group, host.full_rebuild(1120))  # a rebuild judges all
