"""Evaluation of a model on task items under intervention conditions: one record per
(condition, item), teacher-forced or generative.

Runs in eval mode without gradients, in length-sorted batches on ``device``, optionally
under bf16 autocast on CUDA (ranks are always computed in float32/64 outside autocast).
Conditions acting only at ``head_input``/``pre_norm`` share one backbone pass per batch
(``ablate.evaluation.shared_backbone``); the others run with their hooks. The output is
deterministic for fixed inputs.

    >>> conditions = expand_conditions([{"name": "svd_rank_k", "k": [1, 2, 4]}],
    ...                                d=32, n_layers=8)                       # doctest: +SKIP
    >>> frame = evaluate(model, tokenizer, items, conditions, task="gsm8k",
    ...                  mode="teacher_forced", n_iterations=8, eval_seed=0)  # doctest: +SKIP
    >>> frame.groupby("condition")["correct"].mean()                         # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pandas as pd
import torch

from ablate.config import MODES, resolve_device
from ablate.errors import AblateError
from ablate.evaluation.batching import PRECISIONS, autocast
from ablate.evaluation.generative import encode_prompts, run_generative
from ablate.evaluation.records import condition_rows, to_frame
from ablate.evaluation.teacher_forced import encode_forced, run_teacher_forced
from ablate.interventions import Condition, check_sites_fire
from ablate.schema import EVALUATION_COLUMNS
from ablate.tasks import get_task
from ablate.tasks.base import Item, Task
from ablate.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

__all__ = ["EVALUATION_COLUMNS", "MODES", "PRECISIONS", "evaluate"]


def evaluate(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    items: Sequence[Item],
    conditions: Sequence[Condition],
    *,
    task: str | Task,
    mode: str,
    n_iterations: int,
    eval_seed: int,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    few_shot: int = 0,
    train_items: Sequence[Item] | None = None,
    max_new_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
    precision: str = "float32",
    shared_backbone: bool = True,
) -> pd.DataFrame:
    """One row per (condition, item), conditions outermost, with ``EVALUATION_COLUMNS``
    (``ablate.schema``).

    ``task`` is the task (or its name, with default options) whose text format, stop
    sequences and scoring apply (``ablate.tasks``).
    ``mode``: "teacher_forced" (score the gold target) or "generative" (greedy decoding
    from ``few_shot``-shot prompts drawn from ``train_items``; ``max_new_tokens``
    defaults to the task's). ``precision`` "bf16" runs under CUDA autocast.
    ``progress(n)`` is called after each batch with the number of records it finished.
    ``shared_backbone=False`` runs every condition through its own hooked pass (the
    reference the shared pass is checked and benchmarked against). The model is moved
    to ``device`` and put in eval mode for the call (its training flag is restored).
    """
    if mode not in MODES:
        raise AblateError(f"mode '{mode}' is not one of {', '.join(MODES)}")
    if precision not in PRECISIONS:
        raise AblateError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if isinstance(n_iterations, bool) or not isinstance(n_iterations, int) or n_iterations < 0:
        raise AblateError(f"n_iterations must be an integer >= 0, got {n_iterations!r}")
    if not conditions:
        raise AblateError("no conditions to evaluate; pass at least the unablated one")
    labels = [c.label for c in conditions]
    if len(set(labels)) != len(labels):
        raise AblateError(f"conditions repeat a label ({labels}); pass each condition once")
    target = resolve_device(device)
    autocast(target, precision)  # checks bf16 has CUDA before any work
    task_object = get_task(task) if isinstance(task, str) else task
    config = model.config
    check_sites_fire(conditions, n_iterations=n_iterations, n_layers=config.n_layers)
    was_training = model.training
    model.to(target).eval()
    common = dict(n_iterations=n_iterations, eval_seed=eval_seed, batch_size=batch_size,
                  device=target, precision=precision, shared_backbone=shared_backbone,
                  progress=progress)
    try:
        with torch.no_grad():
            if mode == "teacher_forced":
                examples = encode_forced(tokenizer, items, task_object.text_format, config.max_len)
                per_condition = run_teacher_forced(model, examples, conditions, **common)
            else:
                prompts = encode_prompts(tokenizer, items, task_object, few_shot=few_shot,
                                         train_items=train_items, eval_seed=eval_seed,
                                         max_new_tokens=max_new_tokens, max_len=config.max_len)
                per_condition = run_generative(model, tokenizer, prompts, conditions,
                                               task_object, **common)
    finally:
        model.train(was_training)
    rows = [row for condition, item_rows in zip(conditions, per_condition, strict=True)
            for row in condition_rows(condition, item_rows)]
    logger.info("evaluated %d items x %d conditions (%s, T=%d)", len(items), len(conditions),
                mode, n_iterations)
    return to_frame(rows)
