"""Evaluating CODI models: latents, greedy answers and their scores, for any backend.

A backend (``NativeCodi`` or ``ResearchCodi``) implements ``solve``: for each encoded
problem it runs the latent loop (once per hook table: a condition's hooks at the latent
hook points ``latent.{j}``), scores the gold answer teacher-forced after ``<eot> The answer
is:`` and decodes greedily. This module scores those answers through the task
(``task.score`` with the "codi" rule: CODI's first number after the cue, |pred - gold| <
1e-4, beside lm-evaluation-harness's GSM8K filters), and gives the chance baseline.

    >>> task = get_task("synthetic")                                 # doctest: +SKIP
    >>> outcomes = evaluate_items(codi, items, n_latents=6, task=task)  # doctest: +SKIP
    >>> accuracy(outcomes)                                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from ablate.codi.sequences import CodiExample, CodiLayout, clean_answer, encode_example
from ablate.errors import AblateError
from ablate.model.hooks import HookFn
from ablate.tasks.base import Item, Task
from ablate.tasks.extraction import GenerativeScore
from ablate.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

MAX_NEW_TOKENS = 16  # spec §9 (GSM8K)
SCORING = "codi"  # the rule (ablate.tasks.extraction) for the answer after CODI's cue
HookTable = Mapping[str, HookFn]


@dataclass(frozen=True)
class Solution:
    """What a backend returns per problem.

    ``latents`` (n_latents, d, d) float32 on CPU, as fed back (after any hook); None when
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

    def hooks(self, hooks: HookTable) -> contextlib.AbstractContextManager[None]: ...

    def solve(self, examples: Sequence[CodiExample], n_latents: int, *,
              hooks: Sequence[HookTable] = ({},), max_new_tokens: int = MAX_NEW_TOKENS,
              batch_size: int = 32) -> list[list[Solution]]:
        """Per hook table (outer list), per example: the ``Solution``."""
        ...


@dataclass(frozen=True)
class Outcome:
    """One scored problem: ``score.correct_numeric`` is CODI's rule (the primary outcome),
    ``correct_strict``/``correct_flexible`` the GSM8K filters (strict-match looks for
    "#### N", which CODI answers never write)."""

    item: Item
    solution: Solution
    score: GenerativeScore

    @property
    def correct(self) -> bool:
        return self.score.correct_numeric


def encode_items(solver: CodiSolver, items: Sequence[Item], *,
                 max_question_tokens: int | None = None) -> list[CodiExample]:
    return [encode_example(solver.tokenizer, item, solver.layout,
                           max_question_tokens=max_question_tokens) for item in items]


def evaluate_conditions(solver: CodiSolver, items: Sequence[Item], n_latents: int,
                        hooks: Sequence[HookTable], *, task: Task,
                        max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 32,
                        max_question_tokens: int | None = None) -> list[list[Outcome]]:
    """Solve ``items`` with ``n_latents`` latent steps (0 = no thoughts) once per hook
    table ({} = unedited) and score each answer by ``task``; outer list = hook tables."""
    examples = encode_items(solver, items, max_question_tokens=max_question_tokens)
    per_table = solver.solve(examples, n_latents, hooks=hooks, max_new_tokens=max_new_tokens,
                             batch_size=batch_size)
    return [[Outcome(item, solution, task.score(solution.generation, item, rule=SCORING))
             for item, solution in zip(items, solutions, strict=True)]
            for solutions in per_table]


def evaluate_items(solver: CodiSolver, items: Sequence[Item], n_latents: int, *, task: Task,
                   hooks: HookTable | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                   batch_size: int = 32, max_question_tokens: int | None = None,
                   ) -> list[Outcome]:
    """``evaluate_conditions`` with one hook table (default: none)."""
    return evaluate_conditions(solver, items, n_latents, [hooks or {}], task=task,
                               max_new_tokens=max_new_tokens, batch_size=batch_size,
                               max_question_tokens=max_question_tokens)[0]


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
