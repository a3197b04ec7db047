"""``fleetctl login|users|tokens`` through CliRunner against a real server: the admin
adds a hunter, the hunter signs in (the password asked for, hidden) and works with the
token kept in the context file, makes and revokes a token of their own."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner, Result

from fleetctl.cli import main
from tests.conftest import RunningServer


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, list(args), input=input, env=env)
    assert result.exit_code == 0, result.output
    return result


def as_json(*args: str) -> Any:
    return json.loads(run(*args, "--format", "json").stdout)


def test_an_admin_adds_a_hunter_who_signs_in_and_manages_tokens(server: RunningServer) -> None:
    added = run("users", "add", "alice", "--role", "hunter")
    assert added.stdout.startswith("alice: hunter, enabled\npassword (shown once): ")
    password = added.stdout.rsplit(" ", 1)[1].strip()
    users = as_json("users", "list")
    assert [(u["name"], u["role"]) for u in users] == [("admin", "admin"), ("alice", "hunter")]

    context = server.settings.home / "context.json"
    signed = run("login", "--user", "alice", "--ttl", "1h", input=password + "\n")
    assert password not in signed.stdout  # the prompt hides it
    assert "signed in as alice (hunter); token login until " in signed.stdout
    assert json.loads(context.read_text())["token"] != server.token
    assert context.stat().st_mode & 0o777 == 0o600

    refused = CliRunner().invoke(main, ["users", "list"])  # alice is no admin
    assert refused.exit_code == 1 and "admin role required; alice is hunter" in refused.output
    longer = CliRunner().invoke(main, ["tokens", "create", "ci", "--ttl", "7d"])
    assert longer.exit_code == 1 and "a token cannot outlive the one that makes it" in longer.output
    made = run("tokens", "create", "ci", "--role", "observer")  # until the sign-in's end
    ci_token = made.stdout.strip()
    assert "token ci of alice, observer, until " in made.stderr
    tokens = as_json("tokens", "list")
    assert [(t["name"], t["role"], t["state"]) for t in tokens] == [
        ("login", "hunter", "live"),
        ("ci", "observer", "live"),
    ]
    as_ci = CliRunner().invoke(main, ["sql", "SELECT 1 AS n"], env={"FLEETCTL_TOKEN": ci_token})
    assert as_ci.exit_code == 1 and "hunter role required; alice is observer" in as_ci.output
    assert run("tokens", "revoke", "ci").stdout == "revoked alice's token ci\n"
    gone = CliRunner().invoke(main, ["hosts", "list"], env={"FLEETCTL_TOKEN": ci_token})
    assert gone.exit_code == 1 and "missing or invalid admin token" in gone.output

    bad = CliRunner().invoke(main, ["login", "--user", "alice"], input="wrong\n")
    assert bad.exit_code == 1 and "wrong user name or password" in bad.output

    env = {"FLEETCTL_TOKEN": server.token}  # the first admin's, from the first start
    run("users", "set-role", "alice", "observer", env=env)
    run("users", "disable", "alice", env=env)
    shown = as_json("users", "show", "alice", "--token", server.token)
    assert (shown[0]["disabled"], shown[0]["role"], shown[0]["tokens"]) == (
        True,
        "observer",
        "login",
    )
    signed_out = CliRunner().invoke(main, ["hosts", "list"])
    assert signed_out.exit_code == 1 and "user alice is disabled" in signed_out.output
