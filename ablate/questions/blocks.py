"""The report's document model, which questions write and ablate.report renders: headings,
paragraphs, lists, tables (``TableView``: titled rows of formatted strings), notes,
figures, side-by-side columns and the table of contents. Text may use three inline marks,
all valid Markdown: `code`, **bold** and links to a heading in the report, [text](#anchor)
(also in table cells).

    >>> blocks = [Heading(2, "Q1"), Paragraph("Accuracy falls by **8.1 pp**.")]
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableView:
    """A titled table of formatted strings; ``notes`` are its footnotes (e.g. what a mark
    in a p-value cell means)."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    view: TableView


@dataclass(frozen=True)
class Note:
    """A highlighted paragraph: kind "warning" (e.g. incomplete run) or "info"."""

    text: str
    kind: str = "info"


@dataclass(frozen=True)
class FigureBlock:
    """A figure saved as ``png`` and ``svg`` (paths relative to the report); ``png_bytes``
    is embedded in the HTML. ``name`` is the figure's name within its question."""

    label: str
    caption: str
    png: str
    svg: str
    png_bytes: bytes
    name: str = ""


@dataclass(frozen=True)
class Columns:
    """Blocks side by side in the HTML page (one list per column; ``key`` names the row,
    e.g. "lead" for the report's first screen); one after the other in Markdown."""

    key: str
    columns: tuple[tuple[Block, ...], ...]


@dataclass(frozen=True)
class Contents:
    """Where the HTML page lists its sections (the level-2 headings)."""


Block = Heading | Paragraph | Bullets | Table | Note | FigureBlock | Columns | Contents
