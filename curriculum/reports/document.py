"""The report as a document: a list of blocks (heading, text, table, figure, code) built once and rendered twice,
so the markdown and the single-file HTML versions always say the same thing.

report.html embeds the figures as base64 so it is one file to send around; report.md links the PNGs beside it.

Example:
    >>> doc = Document("Run report: demo")
    >>> doc.table(["metric", "value"], [["reward", 0.25]])
    >>> print(doc.to_markdown(Path(".")))
    # Run report: demo
    <BLANKLINE>
    | metric | value |
    |---|---|
    | reward | 0.250 |
    <BLANKLINE>
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from curriculum.layout import REPORT_HTML, REPORT_MD


@dataclass
class Block:
    """One piece of the document; which fields it uses depends on its kind."""

    kind: str  # "h1" | "h2" | "text" | "table" | "figure" | "code"
    text: str = ""
    rows: list[list[str]] = field(default_factory=list)  # table: first row is the header
    path: Path | None = None  # figure


@dataclass
class Document:
    """A titled list of blocks, added in reading order and rendered as markdown (`to_markdown`) or HTML."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(Block("h2", text))

    def text(self, text: str) -> None:
        self.blocks.append(Block("text", text))

    def code(self, text: str) -> None:
        self.blocks.append(Block("code", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.blocks.append(Block("table", rows=[list(map(str, header))] + [[_cell(v) for v in r] for r in rows]))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(Block("figure", caption, path=path))

    def to_markdown(self, base: Path) -> str:
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            if block.kind == "h2":
                lines += [f"## {block.text}", ""]
            elif block.kind == "text":
                lines += [block.text, ""]
            elif block.kind == "code":
                lines += ["```", block.text.rstrip("\n"), "```", ""]
            elif block.kind == "table":
                header, *body = block.rows
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(row) + " |" for row in body]
                lines.append("")
            elif block.kind == "figure":
                lines += [f"![{block.text}]({_relative(block.path, base)})", "", f"*{block.text}*", ""]
        return "\n".join(lines)

    def to_html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            if block.kind == "h2":
                body.append(f"<h2>{html.escape(block.text)}</h2>")
            elif block.kind == "text":
                body.append(f"<p>{_inline_html(block.text)}</p>")
            elif block.kind == "code":
                body.append(f"<pre>{html.escape(block.text)}</pre>")
            elif block.kind == "table":
                header, *rows = block.rows
                head = "".join(f"<th>{html.escape(c)}</th>" for c in header)
                cells = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            elif block.kind == "figure":
                data = base64.b64encode(block.path.read_bytes()).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(block.text)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(block.text)}</figcaption></figure>"
                )
        style = (
            "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
            "th{background:#f3f3f3}img{max-width:100%}figcaption{color:#555;font-style:italic}"
            "pre{background:#f6f6f6;padding:.8em;overflow-x:auto}code{background:#f3f3f3}"
        )
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
        )


def _inline_html(text: str) -> str:
    """Escape text, keeping `code` spans (the only inline markup the report uses)."""
    parts = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def fmt_difference(diff: dict) -> str:
    """'+3.0 pts [-2.0, +8.0]' from a paired difference of rates."""
    if diff.get("mean") is None or math.isnan(diff["mean"]):
        return "–"
    return f"{100 * diff['mean']:+.1f} pts [{100 * diff['ci_low']:+.1f}, {100 * diff['ci_high']:+.1f}]"


@dataclass(frozen=True)
class Report:
    """What a written report consists of, and which inputs it found or missed."""

    markdown: Path
    html: Path
    figures: list[Path]
    found: list[str]
    missing: list[str]


def write_document(doc: Document, out_dir: Path, figures: list[Path], found: list[str], missing: list[str]) -> Report:
    """Write `doc` as report.md and report.html into `out_dir`; return where they went."""
    markdown = out_dir / REPORT_MD
    markdown.write_text(doc.to_markdown(out_dir))
    page = out_dir / REPORT_HTML
    page.write_text(doc.to_html())
    return Report(markdown=markdown, html=page, figures=figures, found=found, missing=missing)

