"""The report as a list of blocks (ablate.questions.blocks: headings, paragraphs, lists,
tables, figures, notes), rendered twice: to Markdown, and to one self-contained HTML page
whose figures are embedded as base64 PNG, with inline CSS and no external resource.

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
            parts.append("\n".join(lines))
        elif isinstance(block, FigureBlock):
            parts.append(f"![{block.label}]({block.png})\n\n*{block.label}.* {block.caption} "
                         f"([SVG]({block.svg}))")
    return "\n\n".join(parts) + "\n"


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def _inline_html(text: str) -> str:
    """Escape text, then turn `code` and **bold** into tags."""
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last:match.start()]))
        if match.group(1) is not None:
            out.append(f"<code>{html.escape(match.group(1))}</code>")
        else:
            out.append(f"<strong>{html.escape(match.group(2))}</strong>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


def _anchor(text: str) -> str:
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
nav { background: #fafafa; border: 1px solid #eee; padding: .5em 1em; font-size: 90%; }
"""


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One HTML page, figures embedded as data: URIs, with a table of contents."""
    body: list[str] = []
    toc = [(block.text, _anchor(block.text)) for block in blocks
           if isinstance(block, Heading) and block.level == 2]
    for index, block in enumerate(blocks):
        if isinstance(block, Heading):
            anchor = f' id="{_anchor(block.text)}"' if block.level == 2 else ""
            body.append(f"<h{block.level}{anchor}>{_inline_html(block.text)}</h{block.level}>")
            if index == 0 and toc:
                links = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for t, a in toc)
                body.append(f"<nav><ul>{links}</ul></nav>")
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
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row)
                           + "</tr>" for row in view.rows)
            body.append(f'<div class="caption">{html.escape(view.title)}</div>'
                        f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, FigureBlock):
            data = base64.b64encode(block.png_bytes).decode("ascii")
            body.append(f'<figure><img src="data:image/png;base64,{data}" '
                        f'alt="{html.escape(block.label)}"><figcaption><strong>'
                        f"{html.escape(block.label)}.</strong> {_inline_html(block.caption)}"
                        "</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
