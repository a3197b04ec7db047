"""``fleetctl coverage``: can each host's telemetry reconstruct an IPC-spawned execution
chain? One cell per DET0493 telemetry item, per host and per platform.

The report comes whole from the admin API (``GET /coverage``); this module only writes
it out: tables, CSV (one line per cell), JSON (the report document) or a Markdown/HTML
report that reads like an executive summary first, then the failing hosts and why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from fleetctl.cli.client import AdminClient, client_options
from fleetctl.cli.output import output_options, render
from fleetctl.cli.report import Block, Bullets, Heading, Paragraph, Table, html, markdown
from fleetctl.timeutil import DURATION_EXAMPLES, parse_duration

FORMATS = ("table", "json", "csv", "markdown", "html")
TITLE = "DET0493 telemetry coverage"
PLATFORM_NAMES = {"linux": "Linux", "darwin": "macOS", "windows": "Windows"}

Doc = Mapping[str, Any]
F = TypeVar("F", bound=Callable[..., Any])


def report_options(func: F) -> F:
    """``--format table|json|csv|markdown|html`` and ``--wide``."""
    return output_options(func, FORMATS)


def _check_retention(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command()
@click.option(
    "--targets",
    default="all",
    show_default=True,
    help="Hosts in scope: all, platform:P, label:L or host:H (comma-separated).",
)
@click.option(
    "--retention",
    default="30d",
    show_default=True,
    callback=_check_retention,
    help=f"History every host must keep, back from now ({DURATION_EXAMPLES}).",
)
@client_options
@report_options
def coverage(client: AdminClient, targets: str, retention: str, fmt: str) -> None:
    """DET0493 telemetry coverage per host and platform; exit 1 on a gap.

    For every host in scope, and rolled up per platform, one cell per telemetry item:
    process creation events, parent-child lineage, command lines and binaries, IPC
    channels, user/session/host context, freshness, schedule health and retention, each
    ok, partial or missing with the reason. Read from the store only: hosts need not be
    online. Exit status 1 when a host misses an item or keeps less history than
    --retention. The last purple-team validation (`fleetctl validate`) of each host is
    shown beside it.
    """
    doc = client.get("/coverage", targets=targets, retention=retention)
    if fmt == "json":
        render([doc], fmt="json")
    elif fmt == "csv":
        render(cell_rows(doc), ("scope", "name", "platform", "item", "status", "reason"), "csv")
    elif fmt == "markdown":
        click.echo(markdown(outline(doc)), nl=False)
    elif fmt == "html":
        click.echo(html(outline(doc), TITLE), nl=False)
    else:
        tables(doc)
    if not doc["ok"]:
        click.echo(verdict(doc), err=True)
        click.get_current_context().exit(1)


def hosts_said(n: int) -> str:
    return f"{n} host" if n == 1 else f"{n} hosts"


def verdict(doc: Doc) -> str:
    """The one line that says why the exit status is 1: each failing host and items."""
    names = titles(doc)
    failing: dict[str, list[str]] = {}
    for row in doc["failing"]:
        said = "retention too short" if row["status"] != "missing" else names[row["item"]]
        failing.setdefault(row["host"], []).append(said)
    shown = [f"{host} ({', '.join(items)})" for host, items in list(failing.items())[:10]]
    more = f" and {len(failing) - 10} more" if len(failing) > 10 else ""
    return (
        f"coverage fails on {len(failing)} of {hosts_said(len(doc['hosts']))}: "
        + "; ".join(shown)
        + more
    )


def titles(doc: Doc) -> dict[str, str]:
    return {item["id"]: item["title"] for item in doc["items"]}


def cell_rows(doc: Doc) -> list[dict[str, str]]:
    """One row per cell: the platform roll-ups, then every host's (validation too)."""
    rows = []
    for p in doc["platforms"]:
        for item, cell in p["cells"].items():
            rows.append({"scope": "platform", "name": p["platform"], "platform": p["platform"]})
            rows[-1] |= {"item": item, **cell}
    for h in doc["hosts"]:
        for item, cell in [*h["cells"].items(), ("validation", h["validation"])]:
            rows.append({"scope": "host", "name": h["host"], "platform": h["platform"]})
            rows[-1] |= {"item": item, **cell}
    return rows


def tables(doc: Doc) -> None:
    items = [item["id"] for item in doc["items"]]
    render(
        [
            {"platform": p["platform"], "hosts": p["hosts"]}
            | {i: p["cells"][i]["status"] for i in items}
            for p in doc["platforms"]
        ],
        ("platform", "hosts", *items),
        title=f"coverage by platform (retention asked: {doc['retention_required']})",
    )
    render(
        [
            {"host": h["host"], "platform": h["platform"]}
            | {i: h["cells"][i]["status"] for i in items}
            | {"validation": h["validation"]["status"]}
            for h in doc["hosts"]
        ],
        ("host", "platform", *items, "validation"),
        title="coverage by host",
    )
    render(
        [
            {"host": h["host"], "item": item, "status": cell["status"], "reason": cell["reason"]}
            for h in doc["hosts"]
            for item, cell in [*h["cells"].items(), ("validation", h["validation"])]
            if cell["status"] != "ok"
        ],
        ("host", "item", "status", "reason"),
        title="why (every cell that is not ok)",
    )


def _platform_line(p: Mapping[str, Any], names: Mapping[str, str]) -> str:
    by_status: dict[str, list[str]] = {}
    for item, cell in p["cells"].items():
        by_status.setdefault(cell["status"], []).append(names[item])
    said = [f"{s}: {', '.join(by_status[s])}" for s in ("missing", "partial") if s in by_status]
    ok = len(by_status.get("ok", []))
    said.append(f"ok: {ok} of {len(p['cells'])} items" if said else "every item ok")
    platform = PLATFORM_NAMES.get(p["platform"], p["platform"])
    return f"{platform} ({hosts_said(p['hosts'])}): " + "; ".join(said)


def outline(doc: Doc) -> list[Block]:
    """The report for a reader: verdict and platforms first, then the failing hosts and
    why, partial coverage, purple-team evidence, and every host's cells."""
    names = titles(doc)
    items = [item["id"] for item in doc["items"]]
    hosts = doc["hosts"]
    failing = {row["host"] for row in doc["failing"]}
    clean = [h for h in hosts if all(c["status"] == "ok" for c in h["cells"].values())]
    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph(
            f"Generated {doc['generated_at']} from the fleet's store for {hosts_said(len(hosts))}; "
            f"each host must keep {doc['retention_required']} of history."
        ),
    ]
    if not hosts:
        return [*blocks, Paragraph("No host in scope: nothing is covered.")]
    said = (
        "Every host in scope shows every item."
        if doc["ok"]
        else f"{len(failing)} of {hosts_said(len(hosts))} "
        + (
            "fails: it misses an item or keeps"
            if len(failing) == 1
            else "fail: they miss an item or keep"
        )
        + " less history than asked."
    )
    blocks += [
        Heading(2, "Summary"),
        Paragraph(f"{said} Fully covered: {len(clean)} of {hosts_said(len(hosts))}."),
        Bullets([_platform_line(p, names) for p in doc["platforms"]]),
        Table(
            ["platform", "hosts", *(names[i] for i in items)],
            [
                [PLATFORM_NAMES.get(p["platform"], p["platform"]), str(p["hosts"])]
                + [p["cells"][i]["status"] for i in items]
                for p in doc["platforms"]
            ],
        ),
    ]
    blocks += _host_sections(doc, names, failing)
    blocks += _validation_section(doc)
    blocks += [
        Heading(2, "Every host"),
        Table(
            ["host", "platform", "last seen", *(names[i] for i in items), "validation"],
            [
                [h["host"], h["platform"], h["last_seen"] or ""]
                + [h["cells"][i]["status"] for i in items]
                + [h["validation"]["status"]]
                for h in hosts
            ],
        ),
    ]
    return blocks


def _host_sections(doc: Doc, names: Mapping[str, str], failing: set[str]) -> list[Block]:
    blocks: list[Block] = []
    for title, chosen in (
        ("Hosts that fail, and why", [h for h in doc["hosts"] if h["host"] in failing]),
        (
            "Partial coverage (not failing)",
            [
                h
                for h in doc["hosts"]
                if h["host"] not in failing
                and any(c["status"] != "ok" for c in h["cells"].values())
            ],
        ),
    ):
        if not chosen:
            continue
        blocks.append(Heading(2, title))
        for h in chosen:
            blocks.append(Heading(3, f"{h['host']} ({h['platform']}, {h['os'] or 'unknown OS'})"))
            blocks.append(
                Bullets(
                    [
                        f"{names[item]}: {cell['status']}: {cell['reason']}"
                        for item, cell in h["cells"].items()
                        if cell["status"] != "ok"
                    ]
                )
            )
    return blocks


def _validation_section(doc: Doc) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Purple-team validation"),
        Table(
            ["host", "result", "detail"],
            [
                [h["host"], h["validation"]["status"], h["validation"]["reason"]]
                for h in doc["hosts"]
            ],
        ),
    ]
    elsewhere = doc.get("validated_elsewhere") or []
    if elsewhere:
        blocks += [
            Paragraph("Validated machines that are not enrolled in the fleet:"),
            Table(
                ["host", "uuid", "scenario", "name", "result", "agent", "ran at"],
                [
                    [
                        v["host"],
                        v["uuid"],
                        v["scenario"],
                        v["name"],
                        v["result"],
                        v["agent"],
                        v["ran_at"] or "",
                    ]
                    for v in elsewhere
                ],
            ),
        ]
    return blocks
