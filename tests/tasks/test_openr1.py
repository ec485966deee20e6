"""Tests for the OpenR1-Math loader on a small fixture in its schema (parquet and jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ablate.errors import AblateError
from ablate.tasks.openr1 import OpenR1Task, strip_answer_line


def record(uuid: str, problem: str, solution: str, answer: str | None) -> dict[str, object]:
    """A row with the real dataset's columns, including list-valued ones."""
    return {
        "problem": problem,
        "solution": solution,
        "answer": answer,
        "problem_type": "Algebra",
        "question_type": "math-word-problem",
        "source": "olympiads",
        "uuid": uuid,
        "generations": ["<think>...</think> \\boxed{0}"],
        "correctness_math_verify": [True],
    }


FIXTURE = [
    record("u1", "Find x if x-1=5.", "We add 1.\nSo x = 6.\nAnswer: $\\boxed{6}$", "6"),
    record("u2", "Half of one?", "Divide.\n$$\\boxed{\\frac{1}{2}}$$", "\\frac{1}{2}"),
    record("u3", "Point?", "It is (1,2).", "(1, 2)"),
    record("u4", "Root of 2?", "It is $\\boxed{\\sqrt{2}}$ by definition.", None),  # gold from box
    record("u5", "Nothing?", "No boxed answer here.", ""),  # no gold at all
    record("u6", "Prove it.", "Proof...", "proof"),  # not an answer
    record("u7", "Broken?", "x", "\\frac{1}{2"),  # unbalanced braces
]
EXCLUDED = {"no_gold": 1, "non_answer": 1, "unbalanced_braces": 1}


def write_fixture(tmp_path: Path) -> tuple[Path, Path]:
    parquet = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(FIXTURE), parquet)
    jsonl = tmp_path / "openr1.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in FIXTURE), encoding="utf-8")
    return parquet, jsonl


def test_unparseable_golds_are_excluded_and_counted(tmp_path: Path) -> None:
    parquet, jsonl = write_fixture(tmp_path)
    for path in (parquet, jsonl, tmp_path):  # the directory resolves to train.parquet
        items, report = OpenR1Task().load_with_report("train", path=str(path))
        assert [i.item_id for i in items] == ["u1", "u2", "u3", "u4"]
        assert (report.n_records, report.n_items, report.n_excluded) == (7, 4, 3)
        assert report.excluded == EXCLUDED


def test_gold_values_and_fallback_to_the_boxed_solution(tmp_path: Path) -> None:
    items = OpenR1Task().load("train", path=str(write_fixture(tmp_path)[0]))
    by_id = {i.item_id: i for i in items}
    assert (by_id["u1"].answer, by_id["u1"].answer_value) == ("6", 6.0)
    assert by_id["u2"].answer_value == 0.5
    assert (by_id["u3"].answer, by_id["u3"].answer_value) == ("(1, 2)", None)
    assert (by_id["u4"].answer, by_id["u4"].answer_value) == ("\\sqrt{2}", None)
    # The final "Answer:" line and a box-only line are not part of the solution.
    assert by_id["u1"].solution == "We add 1.\nSo x = 6."
    assert by_id["u2"].solution == "Divide."
    assert by_id["u4"].solution == "It is $\\boxed{\\sqrt{2}}$ by definition."


def test_numeric_only_also_excludes_non_numeric_golds(tmp_path: Path) -> None:
    items, report = OpenR1Task(numeric_only=True).load_with_report(
        "train", path=str(write_fixture(tmp_path)[1])
    )
    assert [i.item_id for i in items] == ["u1", "u2"]
    assert report.excluded == {**EXCLUDED, "non_numeric": 2}


def test_limit_counts_kept_items(tmp_path: Path) -> None:
    items, report = OpenR1Task().load_with_report(
        "train", path=str(write_fixture(tmp_path)[0]), limit=2
    )
    assert len(items) == 2 and report.n_records == 2


def test_scoring_uses_the_last_box_numerically_else_as_text(tmp_path: Path) -> None:
    task = OpenR1Task()
    by_id = {i.item_id: i for i in task.load("train", path=str(write_fixture(tmp_path)[0]))}
    assert task.score("so \\boxed{0.5}", by_id["u2"]).correct_numeric
    assert task.score("\\boxed{\\left(1,2\\right)}", by_id["u3"]).correct_numeric
    assert task.score("the answer is 6", by_id["u1"]).invalid


def test_missing_problem_field_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"solution": "s", "answer": "1"}]), path)
    with pytest.raises(AblateError, match=r"bad\.parquet row 1: missing field 'problem'"):
        OpenR1Task().load("train", path=str(path))


def test_strip_answer_line_keeps_substantive_last_lines() -> None:
    assert strip_answer_line("a\n**Final Answer** $\\boxed{3}$") == "a"
    assert strip_answer_line("a\n\\[\\boxed{3}\\]") == "a"
    assert strip_answer_line("a\nthus x is \\boxed{3}.") == "a\nthus x is \\boxed{3}."
