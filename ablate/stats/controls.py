"""Question 2: is the top-k SVD projection special, or does any rank-k projection do the same?

Per k the estimand is outcome(SVD_k) - mean over draws of outcome(random_k), paired per
problem. The bootstrap resamples problems (shared by all seeds) and, independently per
seed, the random draws, so the control's own draw-to-draw noise enters both intervals.
Works for any per-item outcome (0/1 accuracy, answer log-likelihood); bits per byte is a
ratio of sums over documents and has its own function that resamples documents.

    >>> result = svd_vs_random({4: svd4}, {4: random4}, margin=2,
    ...                        rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> result.rows[0].result.e3, result.rows[0].p_tost_e3  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ablate.errors import AblateError
from ablate.stats.intervals import (
    TwoWayResult,
    bootstrap_counts,
    check_seed_item_array,
    interval_from_replicates,
)
from ablate.stats.multiplicity import holm

LN2 = math.log(2.0)


@dataclass(frozen=True)
class ControlContrast:
    """SVD minus random at one k, with Holm-adjusted and equivalence p-values."""

    k: int
    result: TwoWayResult
    p_holm_e1: float
    p_holm_e3: float
    p_tost_e1: float | None  # None when no margin was given
    p_tost_e3: float | None


@dataclass(frozen=True)
class SvdVsRandomResult:
    """Q2 over all ks (Holm across k); units: ``scale`` x outcome."""

    rows: tuple[ControlContrast, ...]
    n_draws: int
    scale: float
    margin: float | None


def _check_draws(random: np.ndarray, svd: np.ndarray, name: str) -> np.ndarray:
    draws = np.asarray(random, dtype=np.float64)
    if draws.ndim != 3:
        raise AblateError(f"{name} has shape {draws.shape}; expected (n_seeds, n_draws, n_items)")
    if (draws.shape[0], draws.shape[2]) != svd.shape:
        raise AblateError(f"{name} shape {draws.shape} does not match the SVD array {svd.shape} "
                          "on seeds and items; align them first (ablate.stats.frames)")
    if not np.all(np.isfinite(draws)):
        raise AblateError(f"{name} contains NaN/inf; drop or impute missing items first")
    return draws


def _draw_weights(n_seeds: int, n_draws: int, n_boot: int,
                  rng: np.random.Generator) -> np.ndarray:
    """(B, n_seeds, n_draws) resampled-draw weights summing to 1 over draws."""
    picks = rng.integers(0, n_draws, size=(n_boot * n_seeds, n_draws))
    offsets = picks + n_draws * np.arange(n_boot * n_seeds)[:, None]
    counts = np.bincount(offsets.ravel(), minlength=n_boot * n_seeds * n_draws)
    return counts.reshape(n_boot, n_seeds, n_draws) / n_draws


def _contrast_sums(item_weights: np.ndarray, svd: np.ndarray, random: np.ndarray,
                   draw_weights: np.ndarray) -> np.ndarray:
    """(B, n_seeds) weighted item sums of svd - draw-weighted random.

    item_weights (B, n), svd (S, n), random (S, R, n), draw_weights (B, S, R)."""
    n_seeds, n_draws, n_items = random.shape
    svd_sums = item_weights @ svd.T  # (B, S)
    draw_sums = (item_weights @ random.reshape(n_seeds * n_draws, n_items).T).reshape(
        -1, n_seeds, n_draws)  # (B, S, R)
    return svd_sums - np.einsum("bsr,bsr->bs", draw_sums, draw_weights)


def control_contrast(svd: np.ndarray, random: np.ndarray, *, rng: np.random.Generator,
                     level: float = 0.95, n_boot: int = 2000,
                     denominator: np.ndarray | None = None) -> TwoWayResult:
    """SVD minus mean-over-draws random for one k, problems and draws resampled.

    svd (n_seeds, n_items), random (n_seeds, n_draws, n_items). Without ``denominator`` the
    per-seed statistic is the item mean; with one ((n_items,) or (n_seeds, n_items), e.g.
    bytes) it is the ratio of sums sum(svd - random) / sum(denominator)."""
    svd = check_seed_item_array(svd, "svd")
    random = _check_draws(random, svd, "random")
    n_seeds, n_draws, n_items = random.shape
    if denominator is None:
        denominator = np.ones(n_items)
    denominator = np.broadcast_to(np.asarray(denominator, dtype=np.float64), (n_seeds, n_items))
    if np.any(denominator.sum(axis=1) <= 0):
        raise AblateError("denominator sums to <= 0 for a seed; bytes must be positive")
    point = _contrast_sums(np.ones((1, n_items)), svd, random,
                           np.full((1, n_seeds, n_draws), 1 / n_draws))[0]
    point = point / denominator.sum(axis=1)
    item_weights = bootstrap_counts(n_items, n_boot, rng)
    draw_weights = _draw_weights(n_seeds, n_draws, n_boot, rng)
    replicates = _contrast_sums(item_weights, svd, random, draw_weights)
    replicates = replicates / (item_weights @ denominator.T)
    return interval_from_replicates(point, replicates, n_items=n_items, level=level)


def random_mean(random: np.ndarray, *, rng: np.random.Generator, level: float = 0.95,
                n_boot: int = 2000, denominator: np.ndarray | None = None) -> TwoWayResult:
    """Mean over draws and items of a random control, random (n_seeds, n_draws, n_items),
    with problems and draws resampled (a ratio of sums when ``denominator`` is given)."""
    random = np.asarray(random, dtype=np.float64)
    if random.ndim != 3:
        raise AblateError(f"random has shape {random.shape}; expected (n_seeds, n_draws, n_items)")
    zeros = np.zeros((random.shape[0], random.shape[2]))
    return control_contrast(zeros, -random, rng=rng, level=level, n_boot=n_boot,
                            denominator=denominator)


def svd_vs_random(svd_by_k: dict[int, np.ndarray], random_by_k: dict[int, np.ndarray], *,
                  rng: np.random.Generator, margin: float | None = None, level: float = 0.95,
                  n_boot: int = 2000, scale: float = 1.0,
                  denominator: np.ndarray | None = None) -> SvdVsRandomResult:
    """Q2 for every k present in both dicts: svd_by_k[k] (n_seeds, n_items), random_by_k[k]
    (n_seeds, n_draws, n_items). ``margin`` (in scaled units, e.g. 2 pp with scale=100)
    adds a TOST equivalence p per k; Holm runs across the ks."""
    ks = sorted(set(svd_by_k) & set(random_by_k))
    if not ks:
        raise AblateError(f"no k has both SVD and random arrays: SVD k={sorted(svd_by_k)}, "
                          f"random k={sorted(random_by_k)}")
    results = [control_contrast(scale * np.asarray(svd_by_k[k], dtype=np.float64),
                                scale * np.asarray(random_by_k[k], dtype=np.float64), rng=rng,
                                level=level, n_boot=n_boot, denominator=denominator)
               for k in ks]
    holm_e1 = holm([r.p_e1 for r in results])
    holm_e3 = holm([r.p_e3 for r in results])
    rows = tuple(
        ControlContrast(k=k, result=r, p_holm_e1=float(h1), p_holm_e3=float(h3),
                        p_tost_e1=None if margin is None else r.tost(margin, "e1"),
                        p_tost_e3=None if margin is None else r.tost(margin, "e3"))
        for k, r, h1, h3 in zip(ks, results, holm_e1, holm_e3, strict=True))
    n_draws = int(np.shape(random_by_k[ks[0]])[1])
    return SvdVsRandomResult(rows=rows, n_draws=n_draws, scale=scale, margin=margin)


def bits_per_byte_contrast(svd_nats: np.ndarray, random_nats: np.ndarray, n_bytes: np.ndarray,
                           *, rng: np.random.Generator, level: float = 0.95,
                           n_boot: int = 2000) -> TwoWayResult:
    """Bits per byte of SVD minus random: documents (not tokens) are resampled.

    svd_nats (n_seeds, n_items) and random_nats (n_seeds, n_draws, n_items) are per-document
    summed nats; n_bytes (n_items,) or (n_seeds, n_items) the documents' byte counts. Per seed
    bpb = sum nats / (ln 2 * sum bytes)."""
    return control_contrast(np.asarray(svd_nats, dtype=np.float64) / LN2,
                            np.asarray(random_nats, dtype=np.float64) / LN2, rng=rng,
                            level=level, n_boot=n_boot, denominator=n_bytes)


def bits_per_byte(nats: np.ndarray, n_bytes: np.ndarray, *, rng: np.random.Generator,
                  level: float = 0.95, n_boot: int = 2000) -> TwoWayResult:
    """Bits per byte of one condition, nats (n_seeds, n_items), n_bytes (n_items,) or
    (n_seeds, n_items): per seed sum nats / (ln 2 * sum bytes), documents resampled."""
    nats = check_seed_item_array(nats, "nats")
    zeros = np.zeros((nats.shape[0], 1, nats.shape[1]))
    return control_contrast(nats / LN2, zeros, rng=rng, level=level, n_boot=n_boot,
                            denominator=n_bytes)
