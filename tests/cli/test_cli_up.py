"""``fleetctl up --once``: the whole pipeline on this machine, through the real CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from fleetctl.validate.scenarios import free_port
from storage.engine import make_engine


@pytest.mark.slow
def test_up_once_collects_this_host_and_reports_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "FLEETCTL_HOME": str(home), "COLUMNS": "200"}
    fleetctl = str(Path(sys.executable).with_name("fleetctl"))
    done = subprocess.run(
        [fleetctl, "up", "--once", "--listen", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "6 packs applied" in done.stderr.replace("\n", " ")
    assert "first collection cycle delivered" in done.stderr
    assert f"web console: https://127.0.0.1:{port}/" in done.stderr
    # It says when this host's learning ends, and how to end it now.
    stderr = " ".join(done.stderr.split())
    assert re.search(r"detection on \S+: learning until \d{4}-\d\d-\d\dT[\d:]+Z", stderr)
    assert "`fleetctl detect --learn` ends learning now" in stderr
    out = done.stdout
    assert "rows per query on" in out and "IPC channels feeding processes" in out
    assert "pack_ipc-telemetry_process_lineage" in out
    context = json.loads((home / "context.json").read_text())
    assert context["server"] == f"https://127.0.0.1:{port}"
    # A second run reuses the home: same certificate, same enrolled host.
    again = subprocess.run(
        [fleetctl, "up", "--once", "--listen", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    engine = make_engine(f"sqlite:///{home / 'fleet.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM hosts")).scalar() == 1
        assert conn.execute(text("SELECT enroll_count FROM hosts")).scalar() == 1
        lineage = conn.execute(
            text(
                "SELECT count(*) FROM result_rows WHERE name = 'pack_ipc-telemetry_process_lineage'"
                " AND removed_at IS NULL"
            )
        ).scalar()
    engine.dispose()
    assert lineage and lineage > 1
