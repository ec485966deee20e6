"""Training native matrix-CODI: self-distillation (default) or a COCONUT-style curriculum.

``schedule = "codi"``: every step runs the teacher (question + chain of thought + answer)
and the student (question + ``<bot>`` latents ``<eot>`` + answer) with shared weights and
minimises ``alpha·CE_teacher + beta·CE_student + gamma·KD`` (``NativeCodi.losses``).
``schedule = "curriculum"``: stage s replaces the first s chain-of-thought steps by
``s·latents_per_stage`` latents (all of them, ``n_latents`` latents, at the last stage);
the student writes the remaining steps and the answer; no teacher, no distillation.

The config (``CodiTrainConfig``, ``ablate.codi.train_config``) round-trips through
JSON/TOML (``to_dict``/``from_dict``, unknown keys are errors) and is stored in the
checkpoint's metadata with the exact command.

    >>> result = train_codi(CodiTrainConfig(steps=50))              # doctest: +SKIP
    >>> result.metrics["accuracy"], result.metrics["chance"]          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ablate.codi.evaluation import accuracy, best_constant, evaluate_items, most_frequent_answer
from ablate.codi.native import CodiSettings, NativeCodi
from ablate.codi.sequences import (
    PAD,
    CodiExample,
    collate,
    curriculum_tail,
    encode_example,
)
from ablate.codi.train_config import CodiTrainConfig
from ablate.errors import AblateError
from ablate.model import MatrixThinker
from ablate.tasks import get_task
from ablate.tasks.base import Item
from ablate.tokenizer import ByteTokenizer

logger = logging.getLogger(__name__)

SPECIALS = ("<pad>", "<bot>", "<eot>")
# Progress callback: (step, {"loss": ..., "teacher": ..., ...}).
Progress = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    codi: NativeCodi
    history: list[dict[str, float]]
    metrics: dict[str, Any]


def load_items(config: CodiTrainConfig, split: str, limit: int | None) -> list[Item]:
    task = get_task(config.task, **config.task_options)
    return task.load(split, path=config.data_path, limit=limit)


def build_codi(config: CodiTrainConfig) -> NativeCodi:
    """A freshly initialised native CODI model (seeded by ``config.seed``)."""
    tokenizer = ByteTokenizer(SPECIALS)
    torch.manual_seed(config.seed)
    thinker = MatrixThinker(config.model_config(tokenizer.vocab_size, list(SPECIALS)))
    settings = CodiSettings(projection=config.projection, n_latents=config.n_latents,
                            n_iterations=config.n_iterations)
    return NativeCodi(thinker, tokenizer, settings)


def fitting_examples(codi: NativeCodi, config: CodiTrainConfig,
                     items: list[Item]) -> list[CodiExample]:
    """Encoded training items whose teacher and student sequences fit ``max_len``; the
    rest are dropped and counted (long GSM8K solutions at a small byte max_len)."""
    examples = []
    for item in items:
        example = encode_example(codi.tokenizer, item, codi.layout,
                                 teacher_targets=config.teacher_targets,
                                 max_question_tokens=config.max_question_tokens)
        student = len(example.question_ids) + 1 + config.n_latents + len(example.tail_ids)
        if max(len(example.teacher_ids), student) <= config.max_len:
            examples.append(example)
    if len(examples) < len(items):
        logger.warning("dropped %d of %d training items longer than max_len=%d",
                       len(items) - len(examples), len(items), config.max_len)
    if not examples:
        raise AblateError(f"no training item fits max_len={config.max_len}; raise --max-len "
                          "or lower max_question_tokens")
    return examples


def learning_rate(config: CodiTrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of ``lr`` at ``steps``."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    span = max(1, config.steps - config.warmup)
    progress = min(1.0, (step - config.warmup) / span)
    return config.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def curriculum_stage(config: CodiTrainConfig, step: int, n_stages: int) -> tuple[int, int]:
    """(chain-of-thought steps replaced, latents) at ``step``; the last stage uses them all."""
    stage = min(step // config.stage_steps, n_stages)
    if stage == n_stages:
        return stage, config.n_latents
    return stage, min(stage * config.latents_per_stage, config.n_latents)


def train_codi(config: CodiTrainConfig, *, progress: Progress | None = None,
               log_every: int = 25) -> TrainResult:
    """Train from scratch until ``steps`` or ``time_limit_s``; evaluate at the end."""
    started = time.monotonic()
    codi = build_codi(config)
    tokenizer = codi.tokenizer
    task = get_task(config.task, **config.task_options)
    eval_split = config.eval_split or ("validation" if "validation" in task.splits else "test")
    train_items = load_items(config, config.train_split, config.train_items or None)
    eval_items = load_items(config, eval_split, config.val_items)
    examples = fitting_examples(codi, config, train_items)
    n_stages = max(len(e.steps) for e in examples)
    pad = tokenizer.special_id(PAD)
    optimizer = torch.optim.AdamW(codi.parameters(), lr=config.lr, betas=tuple(config.betas),
                                  weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, float]] = []
    codi.train()
    step = 0
    limit = math.inf if config.time_limit_s is None else config.time_limit_s
    while step < config.steps and time.monotonic() - started < limit:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, step)
        chosen = [examples[i] for i in rng.integers(len(examples), size=config.batch_size)]
        losses = _step_losses(codi, config, chosen, pad, step, n_stages)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(codi.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        if step % log_every == 0 or step == config.steps:
            row = {"step": step, "seconds": time.monotonic() - started,
                   **{k: float(v.detach()) for k, v in losses.items()}}
            history.append(row)
            logger.info("step %d: %s", step, row)
            if progress is not None:
                progress(step, row)
    train_seconds = time.monotonic() - started
    codi.eval()
    outcomes = evaluate_items(codi, eval_items, config.n_latents, task=task,
                              max_question_tokens=config.max_question_tokens)
    answer, chance = most_frequent_answer(train_items, eval_items)
    oracle_answer, oracle = best_constant(eval_items)
    metrics = {
        "steps": step,
        "train_seconds": round(train_seconds, 1),
        "eval_split": eval_split,
        "eval_items": len(eval_items),
        "accuracy": accuracy(outcomes),
        "chance": chance,
        "chance_answer": answer,
        "best_constant": oracle,
        "best_constant_answer": oracle_answer,
        "accuracy_by_depth": _by_depth(outcomes),
        "final_losses": history[-1] if history else {},
    }
    return TrainResult(codi, history, metrics)


def _step_losses(codi: NativeCodi, config: CodiTrainConfig, chosen: list[CodiExample],
                 pad: int, step: int, n_stages: int) -> dict[str, torch.Tensor]:
    if config.schedule == "codi":
        return codi.losses(collate(chosen, pad), config.n_latents, alpha=config.alpha,
                           beta=config.beta, gamma=config.gamma)
    replaced, n_latents = curriculum_stage(config, step, n_stages)
    tails = [curriculum_tail(codi.tokenizer, e, codi.layout, replaced) for e in chosen]
    return codi.losses(collate(chosen, pad, tails=tails), n_latents, alpha=0.0, beta=1.0,
                       gamma=0.0)


def _by_depth(outcomes: list) -> dict[str, float]:
    groups: dict[str, list[bool]] = {}
    for outcome in outcomes:
        depth = outcome.item.depth_annotations
        groups.setdefault("NA" if depth is None else str(depth), []).append(outcome.correct)
    return {depth: sum(v) / len(v) for depth, v in sorted(groups.items())}
