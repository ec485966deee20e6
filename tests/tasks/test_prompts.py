"""Tests for prompt construction: exact templates, byte spans, few-shot draws, stops."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ablate.errors import AblateError
from ablate.tasks import Item, get_task
from ablate.tasks.openr1 import OPENR1_FORMAT
from ablate.tasks.prompts import (
    draw_exemplars,
    fewshot_prompt,
    generative_example,
    teacher_forced_example,
    text_hash,
    truncate_at_stop,
)

GSM8K_FORMAT = get_task("gsm8k").text_format


def make_item(
    index: int, answer: str = "72", solution: str = "Zoë: 48+24 = <<48+24=72>>72"
) -> Item:
    return Item(
        item_id=f"i{index}",
        question=f"Question number {index}?",
        solution=solution,
        answer=answer,
        answer_value=None,
        steps=(),
        depth_annotations=None,
        depth_lines=None,
        doc_hash=f"{index:016x}",
    )


def test_teacher_forced_text_is_the_documented_template() -> None:
    item = make_item(1)
    example = teacher_forced_example(item, GSM8K_FORMAT)
    assert example.prompt == "Question: Question number 1?\nAnswer:"
    assert example.target == " Zoë: 48+24 = <<48+24=72>>72\n#### 72"


def test_byte_spans_cover_exactly_the_solution_and_the_answer() -> None:
    # "ë" is two bytes, so character and byte offsets differ.
    example = teacher_forced_example(make_item(1), GSM8K_FORMAT)
    data = example.target.encode("utf-8")
    assert data[slice(*example.solution_span)].decode() == "Zoë: 48+24 = <<48+24=72>>72"
    assert data[slice(*example.answer_span)] == b"72"
    assert example.answer_span[1] == len(data)
    assert example.answer_text == "72"


def test_openr1_target_ends_in_a_boxed_answer() -> None:
    example = teacher_forced_example(
        make_item(2, answer="\\frac{1}{2}", solution="s"), OPENR1_FORMAT
    )
    assert example.target == " s\nFinal answer: \\boxed{\\frac{1}{2}}"
    assert example.answer_text == "\\frac{1}{2}"


def test_hashes_are_sha256_prefixes() -> None:
    example = teacher_forced_example(make_item(1), GSM8K_FORMAT)
    assert example.prompt_hash == hashlib.sha256(example.prompt.encode()).hexdigest()[:16]
    assert example.target_hash == text_hash(example.target) != example.prompt_hash


def test_exemplar_draws_are_seeded_distinct_and_exclude_the_query() -> None:
    pool = [make_item(i) for i in range(10)]
    first = draw_exemplars(pool, 5, np.random.default_rng(3), exclude=pool[4])
    again = draw_exemplars(pool, 5, np.random.default_rng(3), exclude=pool[4])
    assert first == again
    assert len({e.item_id for e in first}) == 5 and pool[4] not in first
    assert draw_exemplars(pool, 0, np.random.default_rng(3)) == []
    with pytest.raises(AblateError, match="cannot draw 10"):
        draw_exemplars(pool, 10, np.random.default_rng(3), exclude=pool[0])


def test_fewshot_prompt_joins_exemplars_with_blank_lines() -> None:
    exemplar, query = make_item(1, solution="a"), make_item(2)
    assert fewshot_prompt(query, [exemplar], GSM8K_FORMAT) == (
        "Question: Question number 1?\nAnswer: a\n#### 72\n\nQuestion: Question number 2?\nAnswer:"
    )


def test_generative_example_carries_stops_cap_and_exemplar_ids() -> None:
    pool = [make_item(i) for i in range(4)]
    example = generative_example(
        pool[0], GSM8K_FORMAT, pool=pool, k=2, rng=np.random.default_rng(0)
    )
    # lm-evaluation-harness's GSM8K generation_kwargs.until (task version 3.0).
    assert example.stop_sequences == ("Question:", "</s>", "<|im_end|>")
    assert example.max_new_tokens == 256
    assert len(example.exemplar_ids) == 2 and "i0" not in example.exemplar_ids
    assert example.prompt.endswith("Question: Question number 0?\nAnswer:")
    assert example.prompt.count("Question:") == 3


def test_lm_eval_stops_keep_a_blank_line_and_what_follows_it() -> None:
    # Before, "\n\n" was a stop too, and this output lost its answer line.
    text = " Step 1: 3+4=7\n\nStep 2: 7*2=14\n#### 24\n\nQuestion: next"
    assert truncate_at_stop(text, GSM8K_FORMAT.stop_sequences) == (
        " Step 1: 3+4=7\n\nStep 2: 7*2=14\n#### 24\n\n")


def test_a_task_stop_option_replaces_the_stops_of_its_generation_format() -> None:
    task = get_task("gsm8k", stop=["\n\n"])
    assert task.generation_format.stop_sequences == ("\n\n",)
    assert task.generation_format.final_answer_prefix == GSM8K_FORMAT.final_answer_prefix
    assert get_task("synthetic").generation_format.stop_sequences == GSM8K_FORMAT.stop_sequences
    # OpenR1's solutions hold blank lines: only a new question ends them (lm-eval has no
    # OpenR1 task, so its stop stays ablate's own).
    assert get_task("openr1").generation_format.stop_sequences == ("\n\nQuestion:",)


def test_truncate_at_the_earliest_stop() -> None:
    stops = ("\n\nQuestion:", "\n\n")
    assert truncate_at_stop(" a\n#### 3\n\nQuestion: b", stops) == " a\n#### 3"
    assert truncate_at_stop(" a\n#### 3", stops) == " a\n#### 3"
