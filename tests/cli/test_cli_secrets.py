"""``fleetctl secrets add|list|rotate|revoke`` through CliRunner against a real server,
with an osqueryd-shaped enrollment using what the commands printed."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from fleetctl.cli import main
from tests.conftest import RunningServer


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_secrets_are_added_rotated_and_revoked(server: RunningServer, tmp_path: Path) -> None:
    run("labels", "apply", "web-servers", "--hosts", "")
    added = run("secrets", "add", "web", "--label", "web-servers")
    secret = added.stdout.strip()
    assert added.stderr == "enroll secret web added, hosts join label web-servers\n"
    node = server.node("web-1", "uuid-web-1")
    node.secret = secret
    assert "node_key" in node.enroll()

    given = tmp_path / "dmz.conf"
    given.write_text("dmz-secret-from-a-file-0001\n")
    assert run("secrets", "add", "dmz", "--secret-file", str(given)).stdout == ""
    rotated = run("secrets", "rotate", "web")
    assert rotated.stdout.strip() not in ("", secret)
    assert "the old one (web~2) is revoked" in rotated.stderr
    assert run("secrets", "revoke", "dmz").stdout == "revoked enroll secret dmz\n"
    listed = json.loads(run("secrets", "list", "--format", "json").stdout)
    assert [(s["name"], s["label"], s["state"]) for s in listed] == [
        ("default", None, "live"),
        ("web~2", "web-servers", "revoked"),
        ("dmz", None, "revoked"),
        ("web", "web-servers", "live"),
    ]
    missing = CliRunner().invoke(main, ["secrets", "revoke", "nope"])
    assert missing.exit_code == 1 and "no enroll secret named 'nope'" in missing.output
