"""An example or two for every command, shown at the end of its ``--help``.

One table, so a test can parse every example against the command it belongs to (an
option renamed without its example fails the suite) and check that no command lacks one.
"""

from __future__ import annotations

import click

EXAMPLES: dict[str, tuple[str, ...]] = {
    "up": ("fleetctl up --once", "fleetctl up --interval 10 --stock"),
    "serve": (
        "fleetctl serve",
        "fleetctl serve --db postgresql://postgres@127.0.0.1:5432/fleet --listen 0.0.0.0:8443",
    ),
    "agent": (
        "fleetctl agent",
        "fleetctl agent --server https://fleet:8443 --enroll-secret-path /etc/fleetctl/secret",
    ),
    "extension": ("fleetctl extension --socket /var/osquery/osquery.em",),
    "shell": (
        'fleetctl shell "SELECT pid, name FROM processes LIMIT 3"',
        "fleetctl shell --json \"SELECT * FROM process_stdio WHERE kind = 'fifo'\"",
    ),
    "db upgrade": (
        "fleetctl db upgrade",
        "fleetctl db upgrade --db postgresql://postgres@127.0.0.1:5432/fleet",
    ),
    "db current": ("fleetctl db current",),
    "db prune": ("fleetctl db prune --older-than 90d",),
    "db analyst-role": ("fleetctl db analyst-role --print-sql --db postgresql:///fleet",),
    "hosts list": ("fleetctl hosts list", "fleetctl hosts list --format json"),
    "hosts show": ("fleetctl hosts show web-1",),
    "hosts delete": ("fleetctl hosts delete web-1", "fleetctl hosts delete web-1 --keep-history"),
    "results": (
        "fleetctl results --host web-1 --query process_stdio",
        "fleetctl results --host web-1 --query ipc-telemetry/process_lineage --at 2h",
    ),
    "status-logs": ("fleetctl status-logs --host web-1 --limit 20",),
    "data-loss": ("fleetctl data-loss", "fleetctl data-loss --host web-1 --rejected"),
    "carves": ("fleetctl carves",),
    "audit list": (
        "fleetctl audit list --since 1d",
        "fleetctl audit list --user alice --format json",
    ),
    "audit verify": ("fleetctl audit verify",),
    "login": ("fleetctl login --user alice", "fleetctl login --user alice --ttl 8h --name laptop"),
    "users add": (
        "fleetctl users add alice --role hunter",
        "fleetctl users add bob --role observer --password 'a long passphrase'",
    ),
    "users list": ("fleetctl users list",),
    "users show": ("fleetctl users show alice",),
    "users disable": ("fleetctl users disable alice",),
    "users enable": ("fleetctl users enable alice",),
    "users set-role": ("fleetctl users set-role alice observer",),
    "users set-password": ("fleetctl users set-password alice",),
    "secrets add": (
        "fleetctl secrets add web --label web-servers",
        "fleetctl secrets add dmz --secret-file dmz.conf",
    ),
    "secrets list": ("fleetctl secrets list",),
    "secrets rotate": ("fleetctl secrets rotate web", "fleetctl secrets rotate web --keep-old"),
    "secrets revoke": ("fleetctl secrets revoke web~3",),
    "tokens create": (
        "fleetctl tokens create ci --ttl 90d --role observer",
        "fleetctl tokens create nightly-hunts --user hunts-bot --ttl never",
    ),
    "tokens list": ("fleetctl tokens list", "fleetctl tokens list --user alice --format json"),
    "tokens revoke": ("fleetctl tokens revoke ci", "fleetctl tokens revoke laptop --user alice"),
    "coverage": (
        "fleetctl coverage",
        "fleetctl coverage --targets platform:windows --retention 90d --format markdown > cov.md",
    ),
    "packs validate": ("fleetctl packs validate", "fleetctl packs validate mypacks/"),
    "packs test": ("fleetctl packs test", "fleetctl packs test ipc-telemetry --format json"),
    "packs convert": ("fleetctl packs convert osquery.conf --out mypack.json",),
    "packs diff": ("fleetctl packs diff mypack.json",),
    "packs apply": ("fleetctl packs apply mypack.json --label linux-servers",),
    "packs list": ("fleetctl packs list",),
    "packs show": ("fleetctl packs show ipc-telemetry",),
    "packs delete": ("fleetctl packs delete mypack",),
    "labels apply": (
        "fleetctl labels apply web --sql \"SELECT 1 FROM system_info WHERE hostname LIKE 'web%'\"",
        "fleetctl labels apply canaries --hosts web-1,web-2",
    ),
    "labels list": ("fleetctl labels list",),
    "labels show": ("fleetctl labels show web",),
    "labels delete": ("fleetctl labels delete web",),
    "sql": (
        "fleetctl sql \"SELECT host, pid, name, target FROM hunt_stdio WHERE kind = 'fifo'\"",
        'fleetctl sql "SELECT parent, child, count(*) AS n FROM hunt_parent_children'
        ' GROUP BY 1, 2 ORDER BY n" --format csv',
        "fleetctl sql --schema",
        "fleetctl sql \"SELECT host, pid FROM hunt_stdio WHERE kind = 'fifo'\" --save fifo-readers",
        "fleetctl sql --saved",
        "fleetctl sql --run fifo-readers --format json",
    ),
    "query": (
        "fleetctl query \"SELECT pid, name FROM processes WHERE name = 'socat'\"",
        'fleetctl query "SELECT * FROM process_stdio" --targets platform:linux --timeout 2m',
    ),
    "hunt create": (
        "fleetctl hunt create fifo-shells --query t1559-hunts/shell_stdin_fifo --every 6h",
        "fleetctl hunt create nightly --sql \"SELECT * FROM listening_ports\" --cron '0 3 * * *'",
    ),
    "hunt list": ("fleetctl hunt list",),
    "hunt show": ("fleetctl hunt show fifo-shells",),
    "hunt results": (
        "fleetctl hunt results fifo-shells",
        "fleetctl hunt results fifo-shells --diff --format csv",
    ),
    "hunt pause": ("fleetctl hunt pause fifo-shells",),
    "hunt resume": ("fleetctl hunt resume fifo-shells",),
    "hunt cancel": ("fleetctl hunt cancel fifo-shells",),
    "hunt delete": ("fleetctl hunt delete fifo-shells",),
    "findings list": (
        "fleetctl findings list",
        "fleetctl findings list --status open --min-severity high --since 1d",
    ),
    "findings show": (
        "fleetctl findings show 3f2a9c",
        "fleetctl findings show 3f2a9c --occurrence 7 --window 30m --format json",
    ),
    "findings ack": ('fleetctl findings ack 3f2a9c --note "red team exercise"',),
    "findings suppress": ('fleetctl findings suppress 3f2a9c --scope fleet --note "backup job"',),
    "trace": ("fleetctl trace web-1 4242", "fleetctl trace web-1 4242 --at 1h --format dot"),
    "detect": (
        "fleetctl detect",
        "fleetctl detect --host web-1 --since 1d",
        "fleetctl detect --learn",
        "fleetctl detect --status",
    ),
    "baseline list": ("fleetctl baseline list",),
    "baseline add": (
        'fleetctl baseline add parent_child parent=cron child=sh note="nightly jobs"',
        "fleetctl baseline add socket_paths path=/run/app.sock owners=app",
    ),
    "baseline remove": ("fleetctl baseline remove parent_child 0",),
    "baseline export": ("fleetctl baseline export > baseline.yaml",),
    "baseline import": ("fleetctl baseline import baseline.yaml",),
    "validate": ("fleetctl validate", "fleetctl validate --stock --scenario 3 --burners 2"),
}


def add_examples(command: click.Command, path: str) -> None:
    """Put the examples of ``path`` (and of its subcommands) into their help epilogs."""
    examples = EXAMPLES.get(path)
    if examples and not command.epilog:
        command.epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in examples)
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            add_examples(sub, f"{path} {name}")
