"""``fleetctl findings``, ``baseline``, ``trace`` and ``detect``: the analyst's side."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml

from fleetctl.cli import detect_replay
from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.detect_status import show_status
from fleetctl.cli.groups import Group
from fleetctl.cli.output import output_options, render

FINDING_COLUMNS = (
    "id",
    "host",
    "severity",
    "score",
    "status",
    "occurrences",
    "last_occurrence",
    "pid",
    "parent",
    "child",
    "learning",
    "prevalence",
    "first_seen",
    "last_seen",
    "reasons",
)
OCCURRENCE_COLUMNS = (
    "pid",
    "start_time",
    "severity",
    "score",
    "status",
    "first_seen",
    "last_seen",
    "learning",
    "channel",
)
HISTORY_COLUMNS = ("at", "field", "from", "to", "by", "note")
LEARNING = "seen during learning"
LINE_CMDLINE = 100  # characters of a command line in a triage evidence table
STATUSES = ("open", "reopened", "acked", "suppressed")


def _learning(row: Mapping[str, Any]) -> dict[str, Any]:
    """A table row: ``seen_during_learning`` as a word one can read in a column."""
    return {**row, "learning": LEARNING if row.get("seen_during_learning") else ""}


@click.group(cls=Group)
def findings() -> None:
    """New IPC-spawned execution paths, each with every incident (occurrence) on it."""


@findings.command("list")
@click.option("--host", default=None, help="Only this host.")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    default=None,
    help="open includes reopened (an occurrence came after the ack).",
)
@click.option(
    "--since",
    default=None,
    help="Seen since (a duration ago such as 1d, unix seconds or ISO 8601).",
)
@click.option("--until", default=None, help="First seen by then (the same forms as --since).")
@click.option(
    "--min-severity",
    default="low",
    show_default=True,
    type=click.Choice(["info", "low", "medium", "high", "critical"]),
)
@client_options
@output_options
def findings_list(
    client: AdminClient,
    host: str | None,
    status: str | None,
    since: str | None,
    until: str | None,
    min_severity: str,
    fmt: str,
) -> None:
    """Findings, most severe first, with how many occurrences and the newest one's time
    and pid (json: one object per finding). With none, says which hosts only learn yet."""
    answer = client.get(
        "/findings",
        host=host,
        status=status,
        since=since,
        until=until,
        min_severity=min_severity,
    )
    if fmt in ("json", "ndjson"):
        render(answer["findings"], None, fmt)
        return
    render([_learning(f) for f in answer["findings"]], FINDING_COLUMNS, fmt, title="findings")
    learning = answer.get("learning") or {}
    if not answer["findings"] and learning.get("hosts"):
        click.echo(
            f"no findings yet: {learning['hosts']} host(s) still learning, until "
            f"{learning['until']}; until then only paths that look like an attack on their "
            "own become findings (`fleetctl detect --learn` ends learning now)",
            err=True,
        )


@findings.command("show")
@click.argument("finding_id")
@click.option(
    "--limit", default=100, show_default=True, help="Newest N occurrences (each with evidence)."
)
@click.option(
    "--occurrence",
    type=int,
    default=None,
    help="Triage this occurrence (its id) instead of the leading one.",
)
@click.option(
    "--window",
    default="10m",
    show_default=True,
    help="How long after the child started to look at what it did next.",
)
@click.option(
    "--evidence-limit",
    default=20,
    show_default=True,
    help="Evidence rows per triage answer (more are cut, and it says so).",
)
@client_options
@output_options
def findings_show(
    client: AdminClient,
    finding_id: str,
    limit: int,
    occurrence: int | None,
    window: str,
    evidence_limit: int,
    fmt: str,
) -> None:
    """One finding: its occurrences newest first, each with its evidence (lineage, the
    channel and the process at its other end), its history of status and severity, and
    the triage answers for its leading occurrence, each with the rows it used."""
    answer = client.get(
        f"/findings/{finding_id}",
        limit=limit,
        occurrence=occurrence,
        window=window,
        evidence_limit=evidence_limit,
    )
    if fmt != "table":
        newest = answer["occurrences"][0]["evidence"] if answer["occurrences"] else {}
        render(
            [
                answer["finding"]
                | {
                    "evidence": newest,
                    "occurrences": answer["occurrences"],
                    "history": answer["history"],
                    "triage": answer.get("triage"),
                }
            ],
            fmt=fmt,
        )
        return
    summary = answer["finding"]
    fields = [{"field": k, "value": v} for k, v in summary.items() if k != "reasons"]
    render(fields, ("field", "value"), fmt, title=f"finding {summary['id']}")
    click.echo("reasons:")
    for reason in summary["reasons"]:
        click.echo(f"  - {reason}")
    occurrences = answer["occurrences"]
    rows = [_learning(o) | {"channel": _channel(o["evidence"])} for o in occurrences]
    render(rows, OCCURRENCE_COLUMNS, fmt, title="occurrences, newest first")
    for shown in occurrences:
        click.echo(
            f"occurrence pid {shown['pid']} (start time {shown['start_time']}), "
            f"{shown['severity']}, first seen {shown['first_seen']}:"
        )
        for line in evidence_lines(shown["evidence"]):
            click.echo(f"  {line}")
    render(answer["history"], HISTORY_COLUMNS, fmt, title="history")
    if answer.get("triage"):
        print_triage(answer["triage"])


def print_triage(triage: Mapping[str, Any]) -> None:
    """The triage answers as a readable section: question, answer, why, evidence rows."""
    click.echo(
        f"\nTriage of occurrence {triage['occurrence']} (pid {triage['pid']}, started "
        f"{triage['start_time_iso'] or 'at an unknown time'}, window {triage['window']}):"
    )
    for number, item in enumerate(triage["answers"], 1):
        click.echo(f"\n{number}. {item['question']}")
        click.echo(f"   [{item['status']}] {item['answer']}")
        if item["why"]:
            click.echo(f"   why: {item['why']}")
        if item["evidence"]:
            cut = ", cut (raise --evidence-limit)" if item["evidence_cut"] else ""
            render(
                [{k: _short(v) for k, v in row.items()} for row in item["evidence"]],
                title=f"evidence: {len(item['evidence'])} row(s){cut}",
            )


def _short(value: Any) -> Any:
    """A long command line cut for the evidence tables (``--format json`` has it whole)."""
    if isinstance(value, str) and len(value) > LINE_CMDLINE:
        return value[:LINE_CMDLINE] + "…"
    return value


def _channel(evidence: Mapping[str, Any]) -> str:
    """The first IPC channel of fds 0-2 that has a target, in short (``fd 0 fifo /x``)."""
    for channel in evidence.get("channels") or []:
        if channel.get("target"):
            return f"fd {channel.get('fd')} {channel.get('kind')} {channel['target']}"
    return ""


def evidence_lines(evidence: Mapping[str, Any]) -> list[str]:
    """The evidence document as readable lines (lineage first, then channels)."""
    out = []
    for depth, ref in enumerate(evidence.get("lineage") or []):
        user = ref.get("username") or f"uid {ref.get('euid')}"
        out.append(
            f"{'  ' * depth}{ref.get('pid')} {ref.get('basename')} "
            f"({user}) {ref.get('cmdline', '')}".rstrip()
        )
    for channel in evidence.get("channels") or []:
        partners = ", ".join(
            f"{p.get('pid')} {(p.get('process') or {}).get('basename', '')} "
            f"[{p.get('relation', '')}]"
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
def findings_ack(client: AdminClient, finding_id: str, note: str) -> None:
    """Mark a finding's incidents so far as handled; a new occurrence reopens it."""
    answer = client.post(f"/findings/{finding_id}/ack", {"note": note})
    found = answer["finding"]
    click.echo(f"finding {found['id']}: acked by {found['acked_by']} at {found['acked_at']}")


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
def findings_suppress(client: AdminClient, finding_id: str, scope: str, note: str) -> None:
    """Accept a finding's path: it becomes a baseline entry, in one step."""
    answer = client.post(f"/findings/{finding_id}/suppress", {"scope": scope, "note": note})
    click.echo(
        f"finding {answer['finding']['id']}: suppressed; its path key is in baseline "
        f"version {answer['baseline_version']} ({scope})"
    )


@click.group(cls=Group)
def baseline() -> None:
    """ATT&CK's mutable elements (SocketPathBaseline, FIFOAccessPatterns,
    AllowedParentChildPairs, PipeNamePattern) and learned path keys."""


@baseline.command("list")
@client_options
@output_options
def baseline_list(client: AdminClient, fmt: str) -> None:
    """Every entry of the effective baseline (shipped defaults plus yours)."""
    answer = client.get("/baseline")
    render(
        answer["entries"],
        ("section", "index", "entry"),
        fmt,
        title=f"baseline version {answer['version']}",
    )


@baseline.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@client_options
def baseline_export(client: AdminClient, output: Path | None) -> None:
    """Write your baseline file (YAML, keep it in git)."""
    text = client.get("/baseline")["yaml"]
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"baseline written to {output}", err=True)


@baseline.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--note", default="")
@client_options
def baseline_import(client: AdminClient, file: Path, note: str) -> None:
    """Replace the baseline with FILE (validated first; a new version)."""
    answer = client.request("PUT", "/baseline", json={"yaml": file.read_text(), "note": note})
    click.echo(f"baseline version {answer['version']}")


SECTIONS = (
    "socket_paths",
    "fifo_access",
    "parent_child",
    "pipe_names.suspicious",
    "pipe_names.allowed",
    "learned.fleet",
)


def _edit(client: AdminClient, note: str, change: object) -> None:
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
def baseline_add(
    client: AdminClient, section: str, fields: tuple[str, ...], host: str | None
) -> None:
    """Add an entry: rules as FIELD=VALUE (e.g. parent_child parent=cron child=sh; a
    parent_child rule is named PARENT-CHILD unless name= is given), patterns and path
    keys as one value."""
    if section == "learned.hosts":
        if not host:
            raise click.UsageError("learned.hosts needs --host")
        section = f"learned.hosts.{host}"
    simple = section.startswith(("learned.", "pipe_names.allowed"))
    if simple or (section == "pipe_names.suspicious" and "=" not in fields[0]):
        entries: list[object] = list(fields)
    else:
        try:
            rule = dict(field.split("=", 1) for field in fields)
        except ValueError as exc:
            raise click.UsageError("rule fields are FIELD=VALUE") from exc
        if section == "parent_child":  # a rule is named; by its pair unless told
            rule.setdefault("name", f"{rule.get('parent', '*')}-{rule.get('child', '*')}")
        entries = [rule]

    def change(doc: dict[str, object]) -> None:
        _section(doc, section).extend(entries)

    _edit(client, f"add {section}", change)


@baseline.command("remove")
@click.argument("section")
@click.argument("index", type=int)
@client_options
def baseline_remove(client: AdminClient, section: str, index: int) -> None:
    """Remove entry INDEX of SECTION of your file (as `baseline export` shows it)."""

    def change(doc: dict[str, object]) -> None:
        entries = _section(doc, section)
        if not 0 <= index < len(entries):
            raise click.ClickException(
                f"{section} of your baseline file has {len(entries)} entries; the shipped "
                "defaults cannot be removed, only overridden"
            )
        del entries[index]

    _edit(client, f"remove {section}[{index}]", change)


@click.command()
@click.argument("host")
@click.argument("pid", type=int)
@click.option("--at", default=None, help="Unix seconds or ISO 8601 (default: now).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "dot", "json"]), default="text", show_default=True
)
@client_options
def trace(
    client: AdminClient,
    host: str,
    pid: int,
    at: str | None,
    fmt: str,
) -> None:
    """A process's ancestry and descendants with IPC edges, as they were at a time."""
    answer = client.get("/trace", host=host, pid=pid, at=at)
    if fmt == "json":
        click.echo(json.dumps(answer["trace"], indent=2))
    elif fmt == "dot":
        click.echo(answer["dot"])
    else:
        click.echo(f"{answer['host']} pid {answer['pid']} at {answer['at']}")
        click.echo(answer["text"])


@click.command()
@click.option("--host", default=None, help="Only this host (default: every host).")
@click.option(
    "--since",
    default=None,
    help="Replay history since this time, as a server job followed with its progress.",
)
@click.option("--job", "job_id", default=None, metavar="ID", help="Follow this replay job (again).")
@click.option("--detach", is_flag=True, help="With --since: start the job and return at once.")
@click.option("--cancel", is_flag=True, help="With --job: cancel the job.")
@click.option("--restart", is_flag=True, help="With --job: go on with a failed or abandoned job.")
@click.option("--learn", is_flag=True, help="Accept the current paths as the baseline.")
@click.option(
    "--accept",
    "accept",
    multiple=True,
    metavar="KEY",
    help="With --learn: learn this refused path key too (repeatable); it becomes a "
    "baseline entry for its host.",
)
@click.option(
    "--status", is_flag=True, help="Show how far behind detection is instead (lag, backlog)."
)
@client_options
@output_options
def detect(
    client: AdminClient,
    host: str | None,
    since: str | None,
    job_id: str | None,
    detach: bool,
    cancel: bool,
    restart: bool,
    learn: bool,
    accept: tuple[str, ...],
    status: bool,
    fmt: str,
) -> None:
    """Judge hosts now, replay stored history since a time, or learn a baseline.

    --since starts a replay job on the server and follows it (a progress bar on a
    terminal; Ctrl-C detaches, --detach returns at once, --job ID follows it again).
    --learn prints what it learned and what it refused: a path that looks like an attack
    on its own (or already is a finding) is never learned silently; it is a finding
    marked seen during learning, learned only when named with --accept KEY. (json: one
    object per path key, ``action`` learned, accepted or refused; or per new finding.)"""
    if status:
        show_status(client, fmt)
        return
    _check_flags(since, job_id, detach, cancel, restart, learn, accept)
    if since is not None or job_id is not None:
        _replay(client, since, host, job_id, detach, cancel, restart, fmt)
        return
    answer = client.post("/detect", {"host": host, "learn": learn, "accept": list(accept)})
    for key in answer.get("not_seen", []):
        click.echo(f"--accept {key}: no host showed this path key", err=True)
    if fmt != "table":
        rows = learn_rows(answer) if learn else [{"finding": f} for f in answer["new_findings"]]
        render(rows, None, fmt)
    elif learn:
        print_learning(answer)
    else:
        print_new_findings(answer["new_findings"], answer["hosts"], fmt)


def _check_flags(
    since: str | None,
    job_id: str | None,
    detach: bool,
    cancel: bool,
    restart: bool,
    learn: bool,
    accept: tuple[str, ...],
) -> None:
    if accept and not learn:
        raise click.UsageError("--accept goes with --learn")
    if learn and (since is not None or job_id is not None):
        raise click.UsageError(
            "--learn learns the current paths: it goes with neither --since nor --job"
        )
    if since is not None and job_id is not None:
        raise click.UsageError("--since starts a replay job, --job follows one: give one of them")
    if detach and since is None and not restart:
        raise click.UsageError("--detach goes with --since (or --job ID --restart)")
    if (cancel or restart) and job_id is None:
        raise click.UsageError("--cancel and --restart go with --job ID")
    if cancel and (restart or detach):
        raise click.UsageError("--cancel goes with neither --restart nor --detach")


def _replay(
    client: AdminClient,
    since: str | None,
    host: str | None,
    job_id: str | None,
    detach: bool,
    cancel: bool,
    restart: bool,
    fmt: str,
) -> None:
    """Start (or cancel, restart) a replay job, then follow it unless told not to."""
    if job_id is None:
        assert since is not None
        job = detect_replay.start(client, since, host)
    elif cancel:
        job = detect_replay.cancel(client, job_id)
        click.echo(f"replay job {job_id}: {job['state']}, cancel requested", err=True)
        return
    elif restart:
        job = detect_replay.restart(client, job_id)
    else:
        job = {"id": job_id}
    if detach and client.local:
        click.echo("(no server: the replay runs in this process, so it is followed)", err=True)
    elif detach:
        click.echo(job["id"])
        click.echo(
            f"replay job {job['id']} runs on the server; {detect_replay.follow_hint(job['id'])}",
            err=True,
        )
        return
    ended = detect_replay.follow(client, job["id"])
    detect_replay.outcome(ended, lambda found: print_new_findings(found, ended["hosts_total"], fmt))


def print_new_findings(found: list[str], hosts: int, fmt: str) -> None:
    """The ids of new findings (json: one object per finding), or how many there are."""
    if fmt != "table":
        render([{"finding": f} for f in found], None, fmt)
    else:
        click.echo(f"{len(found)} new finding(s) on {hosts} host(s)")


def learn_rows(answer: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every path key ``detect --learn`` saw, with what it did with it."""
    return (
        [{"action": "learned", **k} for k in answer["learned_keys"]]
        + [{"action": "accepted", **k} for k in answer["accepted"]]
        + [{"action": "refused", **r} for r in answer["refused"]]
    )


def print_learning(answer: Mapping[str, Any]) -> None:
    """What ``detect --learn`` learned, accepted and refused, and why it refused."""
    learned = answer["learned_keys"]
    new = [k for k in learned if k["new"]]
    click.echo(
        f"learned {len(learned)} path key(s) of {answer['hosts']} host(s) as their "
        f"baseline: {len(new)} new, {len(learned) - len(new)} known before"
    )
    if new:
        render(new, ("host", "key"), title="learned: new path keys")
    if answer["accepted"]:
        render(answer["accepted"], ("host", "key"), title="accepted by --accept: baseline entries")
    refused = answer["refused"]
    if refused:
        render(
            refused,
            ("host", "key", "severity", "score", "finding", "pids", "reasons"),
            title="refused: not learned, each is a finding (seen during learning)",
        )
        click.echo(
            f"refused {len(refused)} path(s); learn one with `fleetctl detect --learn "
            "--accept KEY`, or review it with `fleetctl findings show ID`"
        )
