"""A judgement that reads the host's history back from the store decides as one that
kept the whole history in memory, on SQLite and PostgreSQL.

The detection service loads, for each judgement, only what the keys and parents in play
can consult (``storage.detection.load_history``) and writes back what changed. Random
hosts (``ipc_streams``) stream through the real ingest path into the service; beside it
a ``Detector`` keeps the whole state in memory and judges every path from scratch. After
every batch the store must hold the findings, path keys and parent/child pairs that state
holds.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fleetctl.detection import Baseline, DetectionState, Detector, build_paths
from fleetctl.detection.state import HostState
from fleetctl.server import node_service
from fleetctl.server.detection_service import DETECTION_QUERIES, Batch, DetectionService
from storage.detection import LAST_SEEN_PRECISION
from storage.engine import session_scope
from storage.findings import FindingOccurrence
from storage.models import FindingRecordRow, ParentChild, PathSighting
from tests.detection.ipc_streams import IpcHost
from tests.detection.rows import proc
from tests.detection.test_incremental_store import Logger, enroll, from_store, sessions

__all__ = ["sessions"]  # the fixture, on both databases

LEARNING = 200
HOUR = LAST_SEEN_PRECISION


def judge(
    service: DetectionService, host_id: int, lines: list[Any], at: int, *, rebuild: bool
) -> None:
    """Store a host's log lines as ``POST /log`` does and judge the rows they changed."""
    with session_scope(service.sessions) as session:
        stats = node_service.ingest_log(
            session, host_id, "result", lines, at, collect=DETECTION_QUERIES.__contains__
        )
    service.judge_changes(host_id, [Batch(None, stats.applied)], rebuild, at)


History = tuple[set[str], dict[str, int], set[tuple[str, str]]]


def stored(session: Session, host_id: int) -> History:
    """The host's finding ids, path keys (last seen) and parent/child pairs in the store."""
    findings = select(FindingRecordRow.id).where(FindingRecordRow.host_id == host_id)
    keys = select(PathSighting.path_key, PathSighting.last_seen).where(
        PathSighting.host_id == host_id
    )
    pairs = select(ParentChild.parent, ParentChild.child).where(ParentChild.host_id == host_id)
    return (
        set(session.scalars(findings)),
        {key: last for key, last in session.execute(keys)},
        {(parent, child) for parent, child in session.execute(pairs)},
    )


def held(state: DetectionState, name: str) -> History:
    """The same three as the in-memory state holds them."""
    return (
        set(state.findings),
        {key: int(seen.last_seen) for key, seen in state.hosts[name].keys.items()},
        {(parent, child) for parent, kids in state.parents.items() for child in kids},
    )


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_a_judge_reading_history_from_the_store_decides_as_one_holding_it_all(
    sessions: sessionmaker[Session], seed: int
) -> None:
    name = f"history-{seed}"
    host_id = enroll(sessions, name)
    host = IpcHost(seed)
    logger = Logger(name, random.Random(seed))
    service = DetectionService(sessions, learning_window=LEARNING)
    memory = DetectionState()
    memory.hosts[name] = HostState(first_seen=1.0)  # enrolled at 1, as ``enroll`` does
    memory.started_at = 1.0
    found = moved = 0
    first: dict[str, int] = {}  # the last_seen each key was first stored with
    for batch in range(14):
        if batch:
            for _ in range(1 + batch // 4):  # past the learning window half way
                host.step()
        if batch == 10:
            host.now += 2 * HOUR
        at = host.now
        lines = logger.lines(host.rows(), host.take_events(), at)
        judge(service, host_id, lines, at, rebuild=batch == 0)
        with session_scope(sessions) as session:
            paths = build_paths(from_store(session, host_id, name, at, 600))
            in_store = stored(session, host_id)
        Detector(Baseline.default(), memory, learning_window=LEARNING).detect(paths, at)
        findings, keys, pairs = held(memory, name)
        assert (in_store[0], set(in_store[1]), in_store[2]) == (findings, set(keys), pairs)
        # A sighting's last_seen is stored to within the hour: the store moves it when the
        # key is judged again an hour on (batch 10 comes two hours after batch 9).
        late = {k: t - in_store[1][k] for k, t in keys.items() if t - in_store[1][k] >= HOUR}
        assert not late, f"batch {batch}: last_seen left behind: {late}"
        moved += sum(last - first.get(k, last) >= HOUR for k, last in in_store[1].items())
        first = {k: first.get(k, last) for k, last in in_store[1].items()}
        found = len(findings)
    assert found  # the streams reach findings, so the comparison covers them
    assert moved  # and keys seen again two hours on moved their last_seen in the store


def test_an_interpreter_app_that_never_started_a_shell_is_flagged_when_it_does(
    sessions: sessionmaker[Session],
) -> None:
    """The parent history the detector keeps is by app (``python3.11 app.py``, not every
    python3): a judgement must read it back by that name, or "the service never started a
    shell before" is never said of an interpreter's app."""
    name = "web-1"
    host_id = enroll(sessions, name)
    logger = Logger(name, random.Random(0))
    service = DetectionService(sessions, learning_window=LEARNING)
    init = proc(1, 0, "/usr/lib/systemd/systemd", "/sbin/init", uid=0, start=1)
    app = proc(700, 1, "/usr/bin/python3.11", "python3 app.py", uid=33, start=2)
    git = proc(710, 700, "/usr/bin/git", "git pull", uid=33, start=3)
    shell = proc(720, 700, "/usr/bin/dash", "sh -c id", uid=33, start=LEARNING + 50)
    for at, tree in ((10, [init, app, git]), (LEARNING + 60, [init, app, git, shell])):
        lines = [logger.line("process_lineage", at, counter=0, action="snapshot", snapshot=tree)]
        judge(service, host_id, lines, at, rebuild=True)
    with session_scope(sessions) as session:
        documents = session.scalars(
            select(FindingOccurrence.document).where(FindingOccurrence.pid == 720)
        ).all()
    assert documents, "the shell the app started after learning is a finding"
    assert any("parent_new_child_class" in str(d) for d in documents), documents


def test_a_key_other_hosts_saw_counts_them_in_the_findings_prevalence(
    sessions: sessionmaker[Session],
) -> None:
    """The fleet's sightings of a key new to the judged host are read as one count per
    key; the finding's prevalence must still count every host that has it."""
    init = proc(1, 0, "/usr/lib/systemd/systemd", "/sbin/init", uid=0, start=1)
    app = proc(700, 1, "/usr/bin/python3.11", "python3 app.py", uid=33, start=2)
    shell = proc(720, 700, "/usr/bin/dash", "sh -c id", uid=33, start=3)
    service = DetectionService(sessions, learning_window=LEARNING)
    for name, at in (("seen-1", 10), ("seen-2", 10), ("quiet", 10), ("new", LEARNING + 60)):
        tree = [init, app, shell] if name != "quiet" else [init, app]
        host_id = enroll(sessions, name)
        line = Logger(name, random.Random(0)).line(
            "process_lineage", at, counter=0, action="snapshot", snapshot=tree
        )
        judge(service, host_id, [line], at, rebuild=True)
    with session_scope(sessions) as session:
        documents = session.scalars(
            select(FindingOccurrence.document)
            .join(FindingRecordRow, FindingRecordRow.id == FindingOccurrence.finding_id)
            .where(FindingRecordRow.host_id == host_id)
        ).all()
    prevalence = [d["prevalence"] for d in documents]
    assert prevalence == [{"hosts_with_key": 3, "hosts_total": 4, "rarity": 0.25}]
