"""The report's document model, which questions write and ablate.report renders: headings,
paragraphs, lists, tables (``TableView``: titled rows of formatted strings), notes and
figures. Text may use two inline marks, both valid Markdown: `code` and **bold**.

    >>> blocks = [Heading(2, "Q1"), Paragraph("Accuracy falls by **8.1 pp**.")]
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableView:
    """A titled table of formatted strings."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


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
    is embedded in the HTML."""

    label: str
    caption: str
    png: str
    svg: str
    png_bytes: bytes


Block = Heading | Paragraph | Bullets | Table | Note | FigureBlock
