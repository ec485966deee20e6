"""Plain UTF-8 text files as documents for language-model training.

A path is one file, or a directory whose ``*.txt`` files (recursively, sorted by path)
each become one document. ``join_nonblank_lines`` prepares byte-model training text the
way the reference byte data was built (spec §7.1): lines that are blank after stripping
are dropped and the rest are concatenated with their own line endings, no separator.

    >>> docs = load_text_documents("corpus/")           # doctest: +SKIP
    >>> stream = join_nonblank_lines(docs).encode()     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ablate.errors import AblateError


@dataclass(frozen=True)
class TextDocument:
    name: str  # the file path
    text: str


def load_text_documents(path: str | Path) -> list[TextDocument]:
    """The documents under ``path`` (a file, or a directory of ``.txt`` files)."""
    root = Path(path)
    if not root.exists():
        raise AblateError(
            f"Text path {root} does not exist; pass a .txt file or a directory of them"
        )
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*.txt") if p.is_file())
    if not files:
        raise AblateError(f"No .txt files in {root}; put UTF-8 .txt files there or pass a file")
    return [TextDocument(str(file), _read_utf8(file)) for file in files]


def join_nonblank_lines(documents: Iterable[TextDocument]) -> str:
    """All documents' non-blank lines, in order, each keeping its line ending."""
    return "".join(
        line
        for document in documents
        for line in document.text.splitlines(keepends=True)
        if line.strip()
    )


def _read_utf8(file: Path) -> str:
    data = file.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise AblateError(
            f"{file}:{line}: not valid UTF-8 (byte offset {err.start}); re-encode the file as "
            "UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from err
