"""Tests for the synthetic arithmetic task: determinism, depth, disjoint splits, GSM8K format."""

from __future__ import annotations

import dataclasses
import operator
import re
from pathlib import Path

import pytest

from ablate.errors import AblateError
from ablate.tasks.gsm8k import GSM8KTask, write_gsm8k_jsonl
from ablate.tasks.synthetic import SyntheticTask

OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
STEP_LINE = re.compile(r"(\d+)([-+*])(\d+)=<<(\d+)([-+*])(\d+)=(\d+)>>(\d+)")


def test_items_depend_only_on_seed_split_and_index() -> None:
    small = SyntheticTask(n_items=5).load("train")
    large = SyntheticTask(n_items=50).load("train", limit=20)
    assert large[:5] == small
    assert SyntheticTask(n_items=5).load("train") == small  # a fresh instance agrees
    assert SyntheticTask(n_items=5, seed=1).load("train") != small


@pytest.mark.parametrize("depth", [1, 5, 8])
def test_fixed_depth_gives_that_many_steps(depth: int) -> None:
    items = SyntheticTask(min_depth=depth, max_depth=depth).load("test", limit=20)
    for item in items:
        assert item.depth_annotations == item.depth_lines == len(item.steps) == depth
        # The opening, one sentence per step, then the question.
        assert len(item.question.split(". ")) == depth + 2


def test_depth_range_is_covered_and_respected() -> None:
    depths = {
        i.depth_annotations for i in SyntheticTask(min_depth=2, max_depth=4).load("train", limit=60)
    }
    assert depths == {2, 3, 4}


def test_every_step_is_correct_arithmetic_chained_to_the_answer() -> None:
    task = SyntheticTask(max_depth=8, max_value=9, max_total=50)
    for item in task.load("validation", limit=40):
        previous = int(item.question.split(" has ")[1].split()[0])
        for line in item.solution.split("\n"):
            a, op, b, a2, op2, b2, value, shown = STEP_LINE.fullmatch(line).groups()
            assert (a, op, b) == (a2, op2, b2) and value == shown
            assert int(a) == previous  # each step starts from the running total
            assert int(value) == OPERATORS[op](int(a), int(b))
            assert 0 <= int(value) <= 50
            previous = int(value)
        assert item.answer == str(previous) and item.answer_value == previous


def test_splits_share_no_question() -> None:
    task = SyntheticTask(max_depth=2)
    questions = {split: {i.question for i in task.load(split, limit=150)} for split in task.splits}
    assert not questions["train"] & questions["test"]
    assert not questions["train"] & questions["validation"]
    assert not questions["validation"] & questions["test"]


def test_default_problems_are_short() -> None:
    sizes = [len(i.question.encode()) for i in SyntheticTask().load("train", limit=100)]
    assert min(sizes) >= 50 and max(sizes) <= 150


def test_gsm8k_jsonl_round_trip_through_the_gsm8k_loader(tmp_path: Path) -> None:
    items = SyntheticTask(max_depth=6).load("test", limit=25)
    path = tmp_path / "synthetic" / "test.jsonl"
    assert write_gsm8k_jsonl(items, path) == 25
    loaded = GSM8KTask().load("test", path=str(path.parent))
    strip_id = [dataclasses.replace(i, item_id="") for i in loaded]
    assert strip_id == [dataclasses.replace(i, item_id="") for i in items]


def test_scoring_uses_the_gsm8k_rules() -> None:
    task = SyntheticTask()
    item = task.load("test", limit=1)[0]
    assert task.score(f"{item.solution}\n#### {item.answer}", item).correct_strict
    assert task.score("no answer", item).invalid


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_depth": 0}, "depth range"),
        ({"max_depth": 9}, "depth range"),
        ({"min_depth": 3, "max_depth": 2}, "depth range"),
        ({"min_value": 5, "max_value": 4}, "value range"),
        ({"max_value": 9, "max_total": 10}, "max_total"),
        ({"seed": -1}, "non-negative"),
        ({"n_items": 2.5}, "non-negative integer"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(AblateError, match=message):
        SyntheticTask(**options)  # type: ignore[arg-type]


def test_unknown_split_and_paths_are_rejected() -> None:
    with pytest.raises(AblateError, match="Did you mean 'test'"):
        SyntheticTask().load("tset")
    with pytest.raises(AblateError, match="takes no path"):
        SyntheticTask().load("test", path="x.jsonl")
