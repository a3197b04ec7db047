"""``fleetctl findings``, ``baseline``, ``trace`` and ``detect``: the analyst's side."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from fleetctl.client import client_options, open_client
from fleetctl.output import output_options, render

FINDING_COLUMNS = (
    "id",
    "host",
    "severity",
    "score",
    "status",
    "pid",
    "parent",
    "child",
    "prevalence",
    "first_seen",
    "last_seen",
    "reasons",
)


@click.group()
def findings() -> None:
    """New IPC-spawned execution paths, with evidence."""


@findings.command("list")
@click.option("--host", default=None, help="Only this host.")
@click.option("--status", type=click.Choice(["open", "acked", "suppressed"]), default=None)
@click.option("--since", default=None, help="Seen since (unix seconds or ISO 8601).")
@click.option(
    "--min-severity",
    default="low",
    show_default=True,
    type=click.Choice(["info", "low", "medium", "high", "critical"]),
)
@client_options
@output_options
@click.pass_context
def findings_list(
    ctx: click.Context,
    host: str | None,
    status: str | None,
    since: str | None,
    min_severity: str,
    server: str,
    token: str,
    ca: str,
    fmt: str,
) -> None:
    """Findings, most severe first (json: one object per finding)."""
    answer = open_client(ctx, server, token, ca).get(
        "/findings", host=host, status=status, since=since, min_severity=min_severity
    )
    columns = None if fmt in ("json", "ndjson") else FINDING_COLUMNS
    render(answer["findings"], columns, fmt, title="findings")


@findings.command("show")
@click.argument("finding_id")
@client_options
@output_options
@click.pass_context
def findings_show(
    ctx: click.Context, finding_id: str, server: str, token: str, ca: str, fmt: str
) -> None:
    """One finding with its evidence: lineage, channels and the process at the other end."""
    answer = open_client(ctx, server, token, ca).get(f"/findings/{finding_id}")
    if fmt != "table":
        render([answer["finding"] | {"evidence": answer["document"]["evidence"]}], fmt=fmt)
        return
    summary = answer["finding"]
    render([{k: v for k, v in summary.items() if k != "reasons"}], fmt=fmt, title="finding")
    click.echo("reasons:")
    for reason in summary["reasons"]:
        click.echo(f"  - {reason}")
    click.echo("evidence:")
    for line in evidence_lines(answer["document"]["evidence"]):
        click.echo(f"  {line}")


def evidence_lines(evidence: dict[str, object]) -> list[str]:
    """The evidence document as readable lines (lineage first, then channels)."""
    out = []
    lineage = evidence.get("lineage") or []
    assert isinstance(lineage, list)
    for depth, ref in enumerate(lineage):
        out.append(
            f"{'  ' * depth}{ref.get('pid')} {ref.get('basename')} "
            f"(uid {ref.get('euid')}) {ref.get('cmdline', '')}".rstrip()
        )
    for channel in evidence.get("channels") or []:  # type: ignore[attr-defined]
        partners = ", ".join(
            f"{p.get('pid')} {p.get('name', '')} [{p.get('relation', '')}]"
            for p in channel.get("partners") or []
        )
        out.append(
            f"fd {channel.get('fd')}: {channel.get('kind')} {channel.get('target', '')}"
            + (f" <-> {partners}" if partners else "")
        )
    for key in ("user", "tty", "session", "container"):
        if evidence.get(key):
            out.append(f"{key}: {evidence[key]}")
    return out


@findings.command("ack")
@click.argument("finding_id")
@click.option("--note", default="", help="Why it is fine or what was done.")
@client_options
@click.pass_context
def findings_ack(
    ctx: click.Context, finding_id: str, note: str, server: str, token: str, ca: str
) -> None:
    """Mark a finding as reviewed."""
    answer = open_client(ctx, server, token, ca).post(f"/findings/{finding_id}/ack", {"note": note})
    click.echo(f"finding {answer['finding']['id']}: acked")


@findings.command("suppress")
@click.argument("finding_id")
@click.option(
    "--scope",
    type=click.Choice(["host", "fleet"]),
    default="host",
    show_default=True,
    help="Accept the path on its host or on every host.",
)
@click.option("--note", default="")
@client_options
@click.pass_context
def findings_suppress(
    ctx: click.Context, finding_id: str, scope: str, note: str, server: str, token: str, ca: str
) -> None:
    """Accept a finding's path: it becomes a baseline entry, in one step."""
    answer = open_client(ctx, server, token, ca).post(
        f"/findings/{finding_id}/suppress", {"scope": scope, "note": note}
    )
    click.echo(
        f"finding {answer['finding']['id']}: suppressed; its path key is in baseline "
        f"version {answer['baseline_version']} ({scope})"
    )


@click.group()
def baseline() -> None:
    """ATT&CK's mutable elements (SocketPathBaseline, FIFOAccessPatterns,
    AllowedParentChildPairs, PipeNamePattern) and learned path keys."""


@baseline.command("list")
@client_options
@output_options
@click.pass_context
def baseline_list(ctx: click.Context, server: str, token: str, ca: str, fmt: str) -> None:
    """Every entry of the effective baseline (shipped defaults plus yours)."""
    answer = open_client(ctx, server, token, ca).get("/baseline")
    render(
        answer["entries"],
        ("section", "index", "entry"),
        fmt,
        title=f"baseline version {answer['version']}",
    )


@baseline.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@client_options
@click.pass_context
def baseline_export(
    ctx: click.Context, output: Path | None, server: str, token: str, ca: str
) -> None:
    """Write your baseline file (YAML, keep it in git)."""
    text = open_client(ctx, server, token, ca).get("/baseline")["yaml"]
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"baseline written to {output}", err=True)


@baseline.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--note", default="")
@client_options
@click.pass_context
def baseline_import(
    ctx: click.Context, file: Path, note: str, server: str, token: str, ca: str
) -> None:
    """Replace the baseline with FILE (validated first; a new version)."""
    answer = open_client(ctx, server, token, ca).request(
        "PUT", "/baseline", json={"yaml": file.read_text(), "note": note}
    )
    click.echo(f"baseline version {answer['version']}")


SECTIONS = (
    "socket_paths",
    "fifo_access",
    "parent_child",
    "pipe_names.suspicious",
    "pipe_names.allowed",
    "learned.fleet",
)


def _edit(ctx: click.Context, server: str, token: str, ca: str, note: str, change: object) -> None:
    client = open_client(ctx, server, token, ca)
    current = client.get("/baseline")
    doc = yaml.safe_load(current["yaml"]) or {}
    change(doc)  # type: ignore[operator]
    answer = client.request(
        "PUT",
        "/baseline",
        json={
            "yaml": yaml.safe_dump(doc, sort_keys=False, width=100),
            "note": note,
            "expected_version": current["version"],
        },
    )
    click.echo(f"baseline version {answer['version']}")


def _section(doc: dict[str, object], section: str) -> list[object]:
    node: dict[str, object] = doc
    *parents, last = section.split(".")
    for part in parents:
        node = node.setdefault(part, {})  # type: ignore[assignment]
    return node.setdefault(last, [])  # type: ignore[return-value]


@baseline.command("add")
@click.argument("section", type=click.Choice([*SECTIONS, "learned.hosts"]))
@click.argument("fields", nargs=-1, required=True)
@click.option("--host", default=None, help="For learned.hosts: the host the key is known on.")
@client_options
@click.pass_context
def baseline_add(
    ctx: click.Context,
    section: str,
    fields: tuple[str, ...],
    host: str | None,
    server: str,
    token: str,
    ca: str,
) -> None:
    """Add an entry: rules as FIELD=VALUE (e.g. parent_child parent=cron child=sh),
    patterns and path keys as one value."""
    if section == "learned.hosts":
        if not host:
            raise click.UsageError("learned.hosts needs --host")
        section = f"learned.hosts.{host}"
    simple = section.startswith(("learned.", "pipe_names.allowed"))
    if simple or (section == "pipe_names.suspicious" and "=" not in fields[0]):
        entries: list[object] = list(fields)
    else:
        try:
            entries = [dict(field.split("=", 1) for field in fields)]
        except ValueError as exc:
            raise click.UsageError("rule fields are FIELD=VALUE") from exc

    def change(doc: dict[str, object]) -> None:
        _section(doc, section).extend(entries)

    _edit(ctx, server, token, ca, f"add {section}", change)


@baseline.command("remove")
@click.argument("section")
@click.argument("index", type=int)
@client_options
@click.pass_context
def baseline_remove(
    ctx: click.Context, section: str, index: int, server: str, token: str, ca: str
) -> None:
    """Remove entry INDEX of SECTION of your file (as `baseline export` shows it)."""

    def change(doc: dict[str, object]) -> None:
        entries = _section(doc, section)
        if not 0 <= index < len(entries):
            raise click.ClickException(
                f"{section} of your baseline file has {len(entries)} entries; the shipped "
                "defaults cannot be removed, only overridden"
            )
        del entries[index]

    _edit(ctx, server, token, ca, f"remove {section}[{index}]", change)


@click.command()
@click.argument("host")
@click.argument("pid", type=int)
@click.option("--at", default=None, help="Unix seconds or ISO 8601 (default: now).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "dot", "json"]), default="text", show_default=True
)
@client_options
@click.pass_context
def trace(
    ctx: click.Context,
    host: str,
    pid: int,
    at: str | None,
    fmt: str,
    server: str,
    token: str,
    ca: str,
) -> None:
    """A process's ancestry and descendants with IPC edges, as they were at a time."""
    answer = open_client(ctx, server, token, ca).get("/trace", host=host, pid=pid, at=at)
    if fmt == "json":
        click.echo(json.dumps(answer["trace"], indent=2))
    elif fmt == "dot":
        click.echo(answer["dot"])
    else:
        click.echo(f"{answer['host']} pid {answer['pid']} at {answer['at']}")
        click.echo(answer["text"])


@click.command()
@click.option("--host", default=None, help="Only this host (default: every host).")
@click.option("--since", default=None, help="Replay history since this time.")
@click.option("--learn", is_flag=True, help="Accept the current paths as the baseline.")
@client_options
@click.pass_context
def detect(
    ctx: click.Context,
    host: str | None,
    since: str | None,
    learn: bool,
    server: str,
    token: str,
    ca: str,
) -> None:
    """Judge hosts now, replay stored history since a time, or learn a baseline."""
    answer = open_client(ctx, server, token, ca).post(
        "/detect", {"host": host, "since": since, "learn": learn}
    )
    if learn:
        click.echo(f"learned the current paths of {answer['hosts']} host(s) as their baseline")
    else:
        click.echo(f"{len(answer['new_findings'])} new finding(s) on {answer['hosts']} host(s)")
