"""The report as a list of blocks (ablate.questions.blocks: headings, paragraphs, lists,
tables, figures, notes, columns, contents), rendered twice: to Markdown, and to one
self-contained HTML page whose figures are embedded as base64 PNG, with inline CSS and no
external resource. Level-2 headings get anchors (``anchor``) that text can link to.

    >>> blocks = [Heading(1, "Report"), Paragraph("Accuracy falls by **8.1 pp**.")]
    >>> to_markdown(blocks).splitlines()[0]
    '# Report'
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

from ablate.questions.blocks import (
    Block,
    Bullets,
    Columns,
    Contents,
    FigureBlock,
    Heading,
    Note,
    Paragraph,
    Table,
)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    """GitHub-flavoured Markdown; figures link their PNG and SVG files."""
    return "\n\n".join(part for part in _markdown_parts(blocks) if part) + "\n"


def _markdown_parts(blocks: Sequence[Block]) -> list[str]:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Note):
            label = "Warning" if block.kind == "warning" else "Note"
            parts.append(f"> **{label}:** {block.text}")
        elif isinstance(block, Table):
            view = block.view
            lines = [f"**{view.title}**", "",
                     "| " + " | ".join(map(_md_cell, view.columns)) + " |",
                     "|" + "|".join("---" for _ in view.columns) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in view.rows]
            lines += ["", *(f"<sub>{note}</sub>" for note in view.notes)] if view.notes else []
            parts.append("\n".join(lines))
        elif isinstance(block, FigureBlock):
            parts.append(f"![{block.label}]({block.png})\n\n*{block.label}.* {block.caption} "
                         f"([SVG]({block.svg}))")
        elif isinstance(block, Columns):
            parts += [part for column in block.columns for part in _markdown_parts(column)]
    return parts


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\((#[\w-]+)\)")


def _inline_html(text: str) -> str:
    """Escape text, then turn `code`, **bold** and [text](#anchor) into tags."""
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        if match.group(1) is not None:
            out.append(f"<code>{html.escape(match.group(1))}</code>")
        elif match.group(2) is not None:
            out.append(f"<strong>{html.escape(match.group(2))}</strong>")
        else:
            out.append(f'<a href="{html.escape(match.group(4))}">'
                       f"{html.escape(match.group(3))}</a>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def anchor(text: str) -> str:
    """The anchor of a level-2 heading ("Q1: does ..." -> "q1-does-...")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1180px; margin: 2em auto; padding: 0 1.5em; line-height: 1.5; }
h1 { border-bottom: 2px solid #1f5fa8; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .15em; margin-top: 2em; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: 92%; }
table { border-collapse: collapse; margin: .6em 0 1.4em; font-size: 85%; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: left; vertical-align: top; }
th { background: #f5f7fa; }
tr:nth-child(even) td { background: #fafafa; }
.caption { font-weight: 600; margin-top: 1em; }
figure { margin: 1.2em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 90%; color: #444; }
.note { border-left: 4px solid #1f5fa8; background: #f3f7fc; padding: .5em 1em; margin: 1em 0; }
.warning { border-left-color: #d0721f; background: #fdf5ec; }
.tablenote { font-size: 80%; color: #555; margin: -1em 0 1.4em; }
nav { background: #fafafa; border: 1px solid #eee; padding: .3em 1em; font-size: 90%; }
nav ul { margin: .2em 0; padding: 0; }
nav li { display: inline; margin-right: 1.2em; }
.columns { display: flex; gap: 1.5em; align-items: flex-start; }
.columns > div { flex: 1 1 0; min-width: 0; }
.lead { margin: .6em 0 1em; }
.lead > div:first-child { flex: 1.5 1 0; }
.lead .caption { margin-top: 0; }
.lead table { display: table; font-size: 78%; margin: .3em 0 .5em; }
.lead td, .lead th { padding: .12em .4em; line-height: 1.3; }
.lead td:not(:first-child), .lead th { white-space: nowrap; }
.lead p { font-size: 85%; margin: .4em 0; line-height: 1.4; }
.lead figure { margin: 0; }
.lead figcaption { font-size: 78%; line-height: 1.35; }
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One HTML page, figures embedded as data: URIs; the level-2 headings are listed
    where a ``Contents`` block stands (after the title when there is none)."""
    toc = [(block.text, anchor(block.text)) for block in blocks
           if isinstance(block, Heading) and block.level == 2]
    if toc and not any(isinstance(block, Contents) for block in blocks):
        blocks = [*blocks[:1], Contents(), *blocks[1:]]
    body = _html_parts(blocks, toc)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _html_parts(blocks: Sequence[Block], toc: Sequence[tuple[str, str]]) -> list[str]:
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            ident = f' id="{anchor(block.text)}"' if block.level == 2 else ""
            body.append(f"<h{block.level}{ident}>{_inline_html(block.text)}</h{block.level}>")
        elif isinstance(block, Contents):
            if toc:
                links = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for t, a in toc)
                body.append(f"<nav><ul>{links}</ul></nav>")
        elif isinstance(block, Columns):
            columns = "".join("<div>" + "\n".join(_html_parts(column, toc)) + "</div>"
                              for column in block.columns)
            body.append(f'<div class="columns {html.escape(block.key)}">{columns}</div>')
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_inline_html(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(block, Note):
            label = "Warning" if block.kind == "warning" else "Note"
            body.append(f'<div class="note {block.kind}"><strong>{label}:</strong> '
                        f"{_inline_html(block.text)}</div>")
        elif isinstance(block, Table):
            view = block.view
            head = "".join(f"<th>{html.escape(c)}</th>" for c in view.columns)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(cell)}</td>" for cell in row)
                           + "</tr>" for row in view.rows)
            notes = "".join(f'<p class="tablenote">{_inline_html(note)}</p>'
                            for note in view.notes)
            body.append(f'<div class="caption">{html.escape(view.title)}</div>'
                        f'<table id="table-{html.escape(view.key)}"><thead><tr>{head}</tr>'
                        f"</thead><tbody>{rows}</tbody></table>{notes}")
        elif isinstance(block, FigureBlock):
            data = base64.b64encode(block.png_bytes).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" '
                        f'alt="{html.escape(block.label)}"><figcaption><strong>'
                        f"{html.escape(block.label)}.</strong> {_inline_html(block.caption)}"
                        "</figcaption></figure>")
    return body
