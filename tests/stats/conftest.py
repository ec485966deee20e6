"""Tiny per-item record tables in the store's schema, built from known probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def make_records(*, n_seeds: int = 3, n_items: int = 40, ks: tuple[int, ...] = (1, 2, 4),
                 n_draws: int = 3, n_iterations: int = 4, config_label: str = "multiprobe",
                 erank_slope: float = 0.2, seed: int = 0,
                 checkpoint_prefix: str = "ckpt") -> pd.DataFrame:
    """Records for one head: unablated, svd_rank_k per k and random_rank_k draws at one site.

    Accuracy rises with k (logit 0.5 log2 k) and the SVD beats random at each k; erank
    rises by ``erank_slope`` per iteration; depth drives erank a little beyond length."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 1, n_items)
    depth = rng.integers(1, 6, n_items)
    n_target = 10 + 5 * depth + rng.integers(0, 5, n_items)
    rows = []

    def add(train_seed: int, intervention: str, k: int | None, draw: int | None,
            logit_shift: float) -> None:
        p = 1 / (1 + np.exp(-(difficulty + logit_shift)))
        correct = rng.random(n_items) < p
        for j in range(n_items):
            trajectory = [3.0 + erank_slope * t + 0.1 * depth[j] + rng.normal(0, 0.1)
                          for t in range(n_iterations + 1)]
            rows.append({
                "job_id": f"{config_label}-{train_seed}-{intervention}-{k}-{draw}",
                "checkpoint": f"{checkpoint_prefix}-{train_seed}", "config_label": config_label,
                "train_seed": train_seed, "eval_seed": 0, "task": "gsm8k", "split": "test",
                "mode": "teacher_forced", "n_iterations": n_iterations,
                "condition": intervention if k is None else f"{intervention}:k={k}",
                "intervention": intervention, "site": "" if k is None else "head_input",
                "k": k, "draw": draw, "item_id": f"item{j:03d}",
                "depth_annotations": None if j == 0 else int(depth[j]),
                "depth_lines": int(depth[j]) + int(j % 2), "n_prompt_tokens": 30,
                "n_target_tokens": int(n_target[j]),
                "answer_loglik": float(-3 + logit_shift + rng.normal(0, 0.5)),
                "solution_nats": float(n_target[j] * (2.0 - 0.1 * logit_shift)),
                "solution_bytes": int(n_target[j] * 3),
                "correct": float(correct[j]),
                "erank_per_iter": trajectory if intervention == "none" else None,
            })

    for train_seed in range(n_seeds):
        add(train_seed, "none", None, None, 3.0)
        for k in ks:
            add(train_seed, "svd_rank_k", k, None, 0.5 * np.log2(k))
            for draw in range(n_draws):
                add(train_seed, "random_rank_k", k, draw, 0.5 * np.log2(k) - 1.0)
    frame = pd.DataFrame(rows)
    for column in ("k", "draw", "depth_annotations"):
        frame[column] = frame[column].astype("Int64")
    return frame


@pytest.fixture
def records() -> pd.DataFrame:
    return make_records()


# Truth of make_codi_records: erank per latent step, per calculator annotation beyond length,
# and accuracy with and without latent thoughts.
LATENT_SLOPE = -0.3
LATENT_DEPTH_EFFECT = 0.2
ACCURACY = {0: 0.3, 6: 0.7}
UNKNOWN_DEPTH_ITEMS = (0, 1)


def make_codi_records(*, n_seeds: int = 3, n_items: int = 60,
                      latent_counts: tuple[int, ...] = (0, 6), label: str = "codi",
                      seed: int = 0) -> pd.DataFrame:
    """Unablated matrix-CODI study records (one group "<label>-L<n>" per number of latents)
    in the study schema. The effective rank of latent Z_j is 4 + LATENT_SLOPE (j - 1) +
    LATENT_DEPTH_EFFECT depth + 0.8 log(n_tokens) + noise: depth drives it beyond length,
    and length (which grows with depth) confounds an unadjusted slope. Accuracy is
    ACCURACY[n] (0.5 for other n); the first items have no annotations (depth NA)."""
    rng = np.random.default_rng(seed)
    depth = rng.integers(1, 6, n_items)
    n_target = 8 + 6 * depth + rng.integers(0, 8, n_items)
    rows = []
    for train_seed in range(n_seeds):
        seed_shift = rng.normal(0, 0.1)
        for n in latent_counts:
            n_prompt = 40 + n
            correct = rng.random(n_items) < ACCURACY.get(n, 0.5)
            for j in range(n_items):
                log_tokens = np.log(n_prompt + n_target[j])
                erank = [4.0 + LATENT_SLOPE * step + LATENT_DEPTH_EFFECT * depth[j]
                         + 0.8 * log_tokens + seed_shift + rng.normal(0, 0.1)
                         for step in range(n)]
                rows.append({
                    "job_id": f"{label}-s{train_seed}__L{n}", "checkpoint": f"ckpt-{train_seed}",
                    "config_label": f"{label}-L{n}", "train_seed": train_seed, "eval_seed": 0,
                    "task": "gsm8k", "split": "test", "mode": "generative", "n_iterations": 1,
                    "condition": "none", "intervention": "none", "site": "none", "k": None,
                    "draw": None, "item_id": f"item{j:03d}",
                    "depth_annotations": None if j in UNKNOWN_DEPTH_ITEMS else int(depth[j]),
                    "depth_lines": None if j in UNKNOWN_DEPTH_ITEMS else int(depth[j]) + j % 2,
                    "n_prompt_tokens": n_prompt, "n_target_tokens": int(n_target[j]),
                    "answer_loglik": float(-4.0 + 2.0 * (n > 0) + rng.normal(0, 0.5)),
                    "correct": float(correct[j]), "erank_per_iter": None,
                    "n_latents": n, "latent_index": None, "latent_erank": erank,
                    "latent_erank_mean": float(np.mean(erank)) if erank else float("nan"),
                })
    frame = pd.DataFrame(rows)
    for column in ("k", "draw", "depth_annotations", "depth_lines", "latent_index"):
        frame[column] = frame[column].astype("Int64")
    return frame
