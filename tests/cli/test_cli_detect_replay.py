"""``fleetctl detect --since``: a replay job on a real server (SQLite and PostgreSQL),
followed to its end, detached from and followed again, and run in the CLI's own process
without a server. Histories are generated hosts logged through ingest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.orm import Session, sessionmaker

from fleetctl.cli import detect_replay, main
from storage import findings as findings_store
from storage.engine import make_engine, make_sessionmaker, session_scope
from tests.conftest import RunningServer
from tests.detection.test_replay_jobs import log_history


def invoke(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def stored_findings(sessions: sessionmaker[Session]) -> set[str]:
    with session_scope(sessions) as session:
        return {f.row.id for f in findings_store.list_findings(session)}


def test_detect_since_follows_its_job_and_prints_the_new_findings(
    server: RunningServer, sessions: sessionmaker[Session]
) -> None:
    log_history(sessions, 90, batches=8)
    result = invoke("detect", "--since", "0", "--format", "json")
    found = {row["finding"] for row in json.loads(result.stdout)}
    assert found and found == stored_findings(sessions)
    assert "replay job " in result.stderr and ": done, 1/1 host(s)" in result.stderr

    again = invoke("detect", "--since", "0")  # nothing is new the second time
    assert again.stdout == "0 new finding(s) on 1 host(s)\n"


def test_a_detached_job_is_followed_again_by_its_id(
    server: RunningServer, sessions: sessionmaker[Session]
) -> None:
    log_history(sessions, 91, batches=8)
    started = invoke("detect", "--since", "0", "--detach")
    job_id = started.stdout.strip()
    assert f"`fleetctl detect --job {job_id}`" in started.stderr
    followed = invoke("detect", "--job", job_id)
    assert followed.stdout == f"{len(stored_findings(sessions))} new finding(s) on 1 host(s)\n"
    refused = invoke("detect", "--job", job_id, "--restart", code=1)
    assert "only a failed or abandoned one restarts" in refused.output


def test_ctrl_c_detaches_and_says_how_to_follow(
    server: RunningServer, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    log_history(sessions, 92, batches=4)

    def interrupted(job: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(detect_replay.Display, "show", lambda self, job: interrupted(job))
    result = invoke("detect", "--since", "0", code=130)
    assert "detached: replay job " in result.stderr
    assert "follow it with `fleetctl detect --job " in result.stderr


def test_without_a_server_the_job_runs_in_the_cli(db_url: str, tmp_path: Path) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        log_history(sessions, 93, batches=6)
        result = invoke("detect", "--since", "0", "--detach", "--db", db_url, "--format", "json")
        assert "(no server: the replay runs in this process, so it is followed)" in result.stderr
        found = {row["finding"] for row in json.loads(result.stdout)}
        assert found and found == stored_findings(sessions)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--learn", "--since", "0"), "--learn learns the current paths"),
        (("--since", "0", "--job", "ab"), "give one of them"),
        (("--detach",), "--detach goes with --since"),
        (("--cancel",), "--cancel and --restart go with --job ID"),
        (("--job", "ab", "--cancel", "--restart"), "--cancel goes with neither"),
    ],
)
def test_replay_flags_that_do_not_go_together_are_refused(args: tuple[str, ...], says: str) -> None:
    result = invoke("detect", *args, code=2)
    assert says in result.output
