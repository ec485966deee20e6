"""Tests for plain-text documents (ablate.tasks.text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.errors import AblateError
from ablate.tasks.text import TextDocument, join_nonblank_lines, load_text_documents


def test_directory_documents_are_the_txt_files_sorted_by_path(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("third ✓", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / "notes.md").write_text("skipped", encoding="utf-8")
    documents = load_text_documents(tmp_path)
    assert [d.text for d in documents] == ["first", "second", "third ✓"]
    assert load_text_documents(tmp_path / "a.txt") == [
        TextDocument(str(tmp_path / "a.txt"), "first")
    ]


def test_invalid_utf8_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(AblateError, match=r"latin\.txt:2: not valid UTF-8"):
        load_text_documents(tmp_path)


def test_missing_or_empty_paths_are_errors(tmp_path: Path) -> None:
    with pytest.raises(AblateError, match="No .txt files"):
        load_text_documents(tmp_path)
    with pytest.raises(AblateError, match="does not exist"):
        load_text_documents(tmp_path / "missing")


def test_blank_lines_are_dropped_and_the_rest_concatenated() -> None:
    documents = [TextDocument("a", " = Title = \n\n   \nline one\n"), TextDocument("b", "tail")]
    assert join_nonblank_lines(documents) == " = Title = \nline one\ntail"
