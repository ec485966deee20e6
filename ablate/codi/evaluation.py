"""Evaluating CODI models: latents, greedy answers and their scores, for any backend.

A backend (``NativeCodi`` or ``ResearchCodi``) implements ``solve``: for each encoded
problem it runs the latent loop (with an optional edit of every latent matrix), scores the
gold answer teacher-forced after ``<eot> The answer is:`` and decodes greedily. This module
scores those answers with CODI's rule (first number after the cue, |pred - gold| < 1e-4)
and lm-evaluation-harness's GSM8K filters, and gives the chance baseline.

    >>> outcomes = evaluate_items(codi, items, n_latents=6)        # doctest: +SKIP
    >>> accuracy(outcomes)                                           # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from ablate.codi.sequences import CodiExample, CodiLayout, clean_answer, encode_example
from ablate.errors import AblateError
from ablate.tasks.base import Item
from ablate.tasks.extraction import GenerativeScore, score_codi, score_gsm8k
from ablate.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

LatentEdit = Callable[[torch.Tensor, int], torch.Tensor]
MAX_NEW_TOKENS = 16  # spec §9 (GSM8K)


@dataclass(frozen=True)
class Solution:
    """What a backend returns per problem.

    ``latents`` (n_latents, d, d) float32 on CPU, as fed back (after any edit); None when
    the model has no matrix latents (the research vanilla run). ``answer_loglik`` sums
    ln p over the gold answer tokens after the cue; ``tf_exact_match`` says whether the
    argmax reproduces all of them.
    """

    generation: str
    latents: torch.Tensor | None
    answer_loglik: float
    tf_exact_match: bool
    n_question_tokens: int
    n_answer_tokens: int


class CodiSolver(Protocol):
    tokenizer: Tokenizer

    @property
    def layout(self) -> CodiLayout: ...

    @property
    def mat_dim(self) -> int | None: ...

    def solve(self, examples: Sequence[CodiExample], n_latents: int, *,
              edits: Sequence[LatentEdit | None] = (None,), max_new_tokens: int = MAX_NEW_TOKENS,
              batch_size: int = 32) -> list[list[Solution]]:
        """Per edit (outer list), per example: the ``Solution``."""
        ...


@dataclass(frozen=True)
class Outcome:
    """One scored problem: ``codi`` is the primary rule, ``lm_eval`` the GSM8K filters
    (strict-match looks for "#### N", which CODI answers never write)."""

    item: Item
    solution: Solution
    codi: GenerativeScore
    lm_eval: GenerativeScore

    @property
    def correct(self) -> bool:
        return self.codi.correct_numeric


def encode_items(solver: CodiSolver, items: Sequence[Item], *,
                 max_question_tokens: int | None = None) -> list[CodiExample]:
    return [encode_example(solver.tokenizer, item, solver.layout,
                           max_question_tokens=max_question_tokens) for item in items]


def score(item: Item, solution: Solution) -> Outcome:
    gold = clean_answer(item)
    return Outcome(item, solution, score_codi(solution.generation, gold),
                   score_gsm8k(solution.generation, gold))


def evaluate_conditions(solver: CodiSolver, items: Sequence[Item], n_latents: int,
                        edits: Sequence[LatentEdit | None], *,
                        max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 32,
                        max_question_tokens: int | None = None) -> list[list[Outcome]]:
    """Solve and score ``items`` with ``n_latents`` latent steps (0 = no thoughts) once
    per edit (None = unedited); outer list = edits."""
    examples = encode_items(solver, items, max_question_tokens=max_question_tokens)
    per_edit = solver.solve(examples, n_latents, edits=edits, max_new_tokens=max_new_tokens,
                            batch_size=batch_size)
    return [[score(item, solution) for item, solution in zip(items, solutions, strict=True)]
            for solutions in per_edit]


def evaluate_items(solver: CodiSolver, items: Sequence[Item], n_latents: int, *,
                   edit: LatentEdit | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                   batch_size: int = 32, max_question_tokens: int | None = None,
                   ) -> list[Outcome]:
    """``evaluate_conditions`` with one edit."""
    return evaluate_conditions(solver, items, n_latents, [edit], max_new_tokens=max_new_tokens,
                               batch_size=batch_size, max_question_tokens=max_question_tokens)[0]


def accuracy(outcomes: Sequence[Outcome]) -> float:
    """Fraction correct under CODI's rule."""
    if not outcomes:
        raise AblateError("no outcomes to score: evaluate at least one item")
    return sum(o.correct for o in outcomes) / len(outcomes)


def best_constant(test: Sequence[Item]) -> tuple[str, float]:
    """The best any constant answer can do on ``test`` (an oracle ceiling for guessing):
    its most frequent answer and that answer's rate."""
    if not test:
        raise AblateError("the constant baseline needs test items")
    answer, count = Counter(clean_answer(item) for item in test).most_common(1)[0]
    return answer, count / len(test)


def most_frequent_answer(train: Sequence[Item], test: Sequence[Item]) -> tuple[str, float]:
    """The chance baseline: the most frequent training answer and its rate on ``test``."""
    if not train or not test:
        raise AblateError("the chance baseline needs training and test items")
    answer, _ = Counter(clean_answer(item) for item in train).most_common(1)[0]
    return answer, sum(clean_answer(item) == answer for item in test) / len(test)
