"""A CODI job's records: every condition over every item at one number of latents.

One record per (condition, item), with the evaluation columns and the CODI columns of
``ablate.schema``: the effective rank (research formula, spec §6.3) and the other rank
metrics of every latent thought Z_j as fed back, token counts, the greedy answer scored
through the task (the "codi" rule), and the teacher-forced log-likelihood of the gold
answer. Conditions act at the hook points ``latent.{j}`` (site ``latent``: every thought;
``latent.j``: thought j), inside the loop, so an edited thought is what the model reads
next. A condition whose sites never fire with this many latents (a ``latent.j`` with
j >= n, any cut with no latents, any cut of a model without matrix thoughts) is left out
of the job, as the unablated baseline stands for it.

    >>> conditions = expand_conditions(tables, d=8, n_layers=0)              # doctest: +SKIP
    >>> conditions = latent_conditions(conditions, n_latents=6, d=8)         # doctest: +SKIP
    >>> frame = evaluate_codi(codi, items, conditions, task=task, n_latents=6,
    ...                       eval_seed=0)                                    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import torch

from ablate.codi.evaluation import MAX_NEW_TOKENS, Outcome, evaluate_conditions
from ablate.codi.loading import model_kind
from ablate.codi.sequences import clean_answer
from ablate.evaluation.records import to_frame
from ablate.interventions import Condition, unfired_part
from ablate.rank import spectral_summary
from ablate.schema import CODI_COLUMNS, EVALUATION_COLUMNS
from ablate.sites import latent_hook_names
from ablate.tasks.base import Item, Task

# Conditions evaluated together (sharing the question pass); bounds progress granularity.
CONDITIONS_PER_PASS = 8


def latent_conditions(conditions: Sequence[Condition], n_latents: int,
                      d: int | None) -> list[Condition]:
    """The conditions that act with ``n_latents`` thoughts of a model whose thoughts are
    d x d matrices (``d`` None: a model without matrix thoughts), in their order."""
    names = latent_hook_names(n_latents if d is not None else 0)
    return [c for c in conditions
            if not c.interventions or unfired_part(c, names) is None]


def depth_or_na(item: Item) -> int | None:
    """Calculator-annotation depth, None (NA) when the problem has none."""
    return item.depth_annotations if item.depth_annotations else None


def evaluate_codi(model: Any, items: Sequence[Item], conditions: Sequence[Condition], *,
                  task: Task, n_latents: int, eval_seed: int, batch_size: int = 32,
                  max_new_tokens: int | None = None, max_question_tokens: int | None = None,
                  progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """One row per (condition, item), conditions outermost, with the evaluation and CODI
    columns; ``progress(n)`` hears of each group of conditions finished (n records)."""
    rows: list[dict[str, Any]] = []
    for begin in range(0, len(conditions), CONDITIONS_PER_PASS):
        group = conditions[begin:begin + CONDITIONS_PER_PASS]
        per_condition = evaluate_conditions(
            model, items, n_latents, [c.hooks(eval_seed) for c in group], task=task,
            max_new_tokens=max_new_tokens or MAX_NEW_TOKENS, batch_size=batch_size,
            max_question_tokens=max_question_tokens)
        for condition, outcomes in zip(group, per_condition, strict=True):
            rows += [_record(model, condition, outcome, n_latents) for outcome in outcomes]
        if progress is not None:
            progress(len(group) * len(items))
    return to_frame(rows, EVALUATION_COLUMNS + CODI_COLUMNS)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _record(model: Any, condition: Condition, outcome: Outcome,
            n_latents: int) -> dict[str, Any]:
    item, solution, score = outcome.item, outcome.solution, outcome.score
    layout = model.layout
    gold = " " + clean_answer(item)
    prompt = (f"{item.question.strip()}{layout.question_suffix}<bot>"
              f"[{n_latents} latents]<eot>{layout.cue}")
    n_tail = 1 + len(model.tokenizer.encode(layout.cue))
    question_tokens = len(model.tokenizer.encode(item.question.strip() + layout.question_suffix))
    nats = -solution.answer_loglik
    n_bytes = len(gold.encode("utf-8"))
    parts = condition.interventions
    return {
        **condition.record_fields(),
        "item_id": item.item_id, "doc_hash": item.doc_hash, "prompt_hash": _hash(prompt),
        "target_hash": _hash(gold), "depth_annotations": depth_or_na(item),
        "depth_lines": item.depth_lines,
        "n_prompt_tokens": solution.n_question_tokens + 1 + n_latents + n_tail,
        "n_target_tokens": solution.n_answer_tokens,
        "prompt_truncated": question_tokens - solution.n_question_tokens,
        "answer_loglik": solution.answer_loglik, "solution_nats": nats,
        "solution_bytes": n_bytes, "bits_per_byte": nats / math.log(2) / n_bytes,
        "tf_exact_match": solution.tf_exact_match, "prediction": solution.generation,
        "correct_strict": score.correct_strict, "correct_flexible": score.correct_flexible,
        "correct_numeric": score.correct_numeric, "invalid": score.invalid,
        "correct": float(score.correct_numeric),
        "erank_per_iter": None, "erank_answer_per_iter": None, "erank_head_input": float("nan"),
        "model_kind": model_kind(model), "n_latents": n_latents,
        "latent_index": _latent_index(parts),
        "n_question_tokens": solution.n_question_tokens,
        **latent_metrics(solution.latents),
    }


def _latent_index(parts: Sequence[Any]) -> int | None:
    """The one thought j every part cuts (site latent.j), else None (every thought, none)."""
    sites = {part.site for part in parts}
    if len(sites) != 1:
        return None
    _, _, index = sites.pop().partition(".")
    return int(index) if index.isdigit() else None


def latent_metrics(latents: torch.Tensor | None) -> dict[str, Any]:
    """Per-latent rank metrics (lists, latent order) and the mean effective rank."""
    if latents is None or latents.shape[0] == 0:
        empty: list = []
        return {"latent_erank": empty, "latent_erank_mean": float("nan"),
                "latent_stable_rank": empty, "latent_participation_ratio": empty,
                "latent_numerical_rank": empty}
    summary = spectral_summary(latents)
    erank = [float(v) for v in summary["effective_rank_research"]]
    return {
        "latent_erank": erank,
        "latent_erank_mean": sum(erank) / len(erank),
        "latent_stable_rank": [float(v) for v in summary["stable_rank"]],
        "latent_participation_ratio": [float(v) for v in summary["participation_ratio"]],
        "latent_numerical_rank": [int(v) for v in summary["numerical_rank"]],
    }
