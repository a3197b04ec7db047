"""One row per case, printed as a table at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Outcome:
    case: str
    backend: str
    passed: bool
    detail: str


def print_table(outcomes: list[Outcome], console: Console | None = None) -> None:
    console = console or Console(width=160)
    table = Table(title="fault suite", show_lines=False)
    table.add_column("case")
    table.add_column("database")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    for o in outcomes:
        table.add_row(o.case, o.backend, "[green]pass[/]" if o.passed else "[red]FAIL[/]", o.detail)
    console.print(table)
    failed = sum(not o.passed for o in outcomes)
    console.print(f"{len(outcomes) - failed} passed, {failed} failed")
