"""Reports for people who read them as documents: Markdown and HTML from one outline.

A report is an outline of blocks (headings, paragraphs, bullet lists, tables) built
once; ``markdown`` and ``html`` write it out. Every value is escaped where it is
written, because hosts choose their own names: a hostname such as
``<script>...`` or ``a|b`` must read as text in either format.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]


Block = Heading | Paragraph | Bullets | Table

_MD_SPECIAL = re.compile(r"([\\`*\[\]<>|&])")


def md_text(value: str) -> str:
    """Text as Markdown shows it literally: specials backslash-escaped, one line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(value.split()))


def markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append("#" * block.level + " " + md_text(block.text))
        elif isinstance(block, Paragraph):
            out.append(md_text(block.text))
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {md_text(item)}" for item in block.items))
        else:
            lines = [
                "| " + " | ".join(md_text(c) for c in block.columns) + " |",
                "|" + "---|" * len(block.columns),
            ]
            lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .5rem;"
    "text-align:left;vertical-align:top}.ok{background:#e3f4e3}.partial{background:#fff4d6}"
    ".missing{background:#fbe0e0}"
)
STATUS_CLASSES = ("ok", "partial", "missing")


def _cell(value: str, tag: str) -> str:
    css = f' class="{value}"' if value in STATUS_CLASSES else ""
    return f"<{tag}{css}>{html_lib.escape(value)}</{tag}>"


def html(blocks: Sequence[Block], title: str) -> str:
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f"<h{level}>{html_lib.escape(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{html_lib.escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{html_lib.escape(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        else:
            head = "".join(_cell(c, "th") for c in block.columns)
            rows = "".join(
                "<tr>" + "".join(_cell(c, "td") for c in row) + "</tr>" for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html_lib.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
