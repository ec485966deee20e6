r"""Prompt construction: teacher-forced (prompt, target) pairs and few-shot generative prompts.

Template (GSM8K and synthetic; ``TextFormat`` defaults, lm-evaluation-harness's layout)::

    prompt = "Question: {question}\nAnswer:"
    target = " {solution}\n#### {answer}"

so prompt + target is "Question: {q}\nAnswer: {solution}\n#### {answer}", and the GSM8K
answer field is exactly target[1:]. OpenR1 ends its target with
"\nFinal answer: \boxed{answer}" instead. Spans are UTF-8 byte offsets into the target,
so evaluation can score exactly the answer tokens (a byte tokenizer's token offsets are
these byte offsets).

Few-shot prompts join k exemplars (prompt + target each, drawn from a pool with an
explicit numpy Generator) and the query prompt with blank lines; generation stops at
lm-evaluation-harness's GSM8K stops "Question:", "</s>" and "<|im_end|>" (a task's
``stop`` option replaces them; OpenR1: "\n\nQuestion:"), or after max_new_tokens.

    >>> example = teacher_forced_example(item, task.text_format)   # doctest: +SKIP
    >>> example.answer_text                                        # doctest: +SKIP
    '72'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ablate.errors import AblateError
from ablate.tasks.base import Item, TextFormat


def text_hash(text: str) -> str:
    """First 16 hex chars of sha256 over UTF-8 ``text`` (``prompt_hash``/``target_hash``)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class TeacherForcedExample:
    """A prompt and its gold continuation; spans are [start, end) byte offsets in target."""

    item_id: str
    prompt: str
    target: str
    solution_span: tuple[int, int]
    answer_span: tuple[int, int]

    @property
    def target_bytes(self) -> bytes:
        return self.target.encode("utf-8")

    @property
    def answer_text(self) -> str:
        return self.target_bytes[slice(*self.answer_span)].decode("utf-8")

    @property
    def prompt_hash(self) -> str:
        return text_hash(self.prompt)

    @property
    def target_hash(self) -> str:
        return text_hash(self.target)


@dataclass(frozen=True)
class GenerativeExample:
    """A few-shot prompt and how to decode after it."""

    item_id: str
    prompt: str
    stop_sequences: tuple[str, ...]
    max_new_tokens: int
    exemplar_ids: tuple[str, ...]

    @property
    def prompt_hash(self) -> str:
        return text_hash(self.prompt)


def render_prompt(item: Item, text_format: TextFormat) -> str:
    """ "Question: {question}\\nAnswer:" (the part the model is conditioned on)."""
    return f"{text_format.question_prefix}{item.question}{text_format.answer_prefix}"


def render_target(item: Item, text_format: TextFormat) -> str:
    """ " {solution}\\n#### {answer}" (the part that is scored)."""
    return (
        f"{text_format.target_delimiter}{item.solution}{text_format.final_answer_prefix}"
        f"{item.answer}{text_format.final_answer_suffix}"
    )


def teacher_forced_example(item: Item, text_format: TextFormat) -> TeacherForcedExample:
    """The (prompt, target) pair of ``item`` with the byte spans of solution and answer."""
    solution_start = _n_bytes(text_format.target_delimiter)
    solution_end = solution_start + _n_bytes(item.solution)
    answer_start = solution_end + _n_bytes(text_format.final_answer_prefix)
    answer_end = answer_start + _n_bytes(item.answer)
    return TeacherForcedExample(
        item_id=item.item_id,
        prompt=render_prompt(item, text_format),
        target=render_target(item, text_format),
        solution_span=(solution_start, solution_end),
        answer_span=(answer_start, answer_end),
    )


def draw_exemplars(
    pool: Sequence[Item], k: int, rng: np.random.Generator, *, exclude: Item | None = None
) -> list[Item]:
    """``k`` distinct items of ``pool`` in random order, never ``exclude`` (by doc_hash)."""
    if k < 0:
        raise AblateError(f"number of few-shot exemplars must be >= 0, got {k}")
    if k == 0:
        return []
    candidates = [
        i for i, item in enumerate(pool) if exclude is None or item.doc_hash != exclude.doc_hash
    ]
    if len(candidates) < k:
        raise AblateError(
            f"cannot draw {k} few-shot exemplars from a pool of {len(candidates)} items; "
            "lower num_fewshot or load more train items"
        )
    chosen = rng.choice(len(candidates), size=k, replace=False)
    return [pool[candidates[int(index)]] for index in chosen]


def fewshot_prompt(item: Item, exemplars: Sequence[Item], text_format: TextFormat) -> str:
    """Exemplars (prompt + target each), then the query prompt, separated by blank lines."""
    blocks = [render_prompt(e, text_format) + render_target(e, text_format) for e in exemplars]
    blocks.append(render_prompt(item, text_format))
    return text_format.exemplar_separator.join(blocks)


def generative_example(
    item: Item,
    text_format: TextFormat,
    *,
    pool: Sequence[Item],
    k: int,
    rng: np.random.Generator,
    max_new_tokens: int | None = None,
) -> GenerativeExample:
    """A k-shot prompt for ``item`` with exemplars from ``pool`` (the train split)."""
    exemplars = draw_exemplars(pool, k, rng, exclude=item)
    cap = text_format.max_new_tokens if max_new_tokens is None else max_new_tokens
    if cap < 1:
        raise AblateError(f"max_new_tokens must be >= 1, got {cap}")
    return GenerativeExample(
        item_id=item.item_id,
        prompt=fewshot_prompt(item, exemplars, text_format),
        stop_sequences=text_format.stop_sequences,
        max_new_tokens=cap,
        exemplar_ids=tuple(e.item_id for e in exemplars),
    )


def truncate_at_stop(text: str, stop_sequences: Sequence[str]) -> str:
    """``text`` up to the earliest stop sequence (all of it if none occurs)."""
    cut = len(text)
    for stop in stop_sequences:
        position = text.find(stop)
        if 0 <= position < cut:
            cut = position
    return text[:cut]


def _n_bytes(text: str) -> int:
    return len(text.encode("utf-8"))
