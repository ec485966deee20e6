"""Question 3: does effective rank rise over iterations, and does the head decide the direction?

Input trajectories are (n_seeds, n_sequences, n_iters): mean effective rank over token
positions of M(0), M(1), ..., M(T) for each seed and sequence. Per seed we take the OLS
slope over iterations ``start..T`` (default 1..T: M(0) is the embedding, not an
iteration) and the difference iteration T minus iteration ``start``; both are item means of
per-sequence contrasts, so the paired two-way interval combines the seeds.

    >>> trend = erank_trend(erank, rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> trend.slope.e3, trend.last_minus_first.e3  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ablate.errors import AblateError
from ablate.stats.intervals import ONE_SEED_REASON, TwoWayResult, mean_interval

# Above this many label splits the permutation p is estimated from random splits instead.
MAX_EXACT_SPLITS = 200_000
MIN_PER_ARM = 4


@dataclass(frozen=True)
class IterationTrend:
    """Per-seed slope per iteration and last-minus-first change, combined over seeds."""

    slope: TwoWayResult
    last_minus_first: TwoWayResult
    iterations: tuple[int, ...]  # iteration indices used (start..T)
    per_seed_trajectory: np.ndarray  # (n_seeds, n_iters) mean over sequences, all iterations


@dataclass(frozen=True)
class UnpairedComparison:
    """Heads fixed at training: per-checkpoint slopes of head A minus head B."""

    estimate: float
    interval: tuple[float, float]  # Welch interval at ``level``
    welch_t: float
    welch_df: float
    p_welch: float
    p_permutation: float  # nan when an arm has < 4 checkpoints
    permutation_method: str  # "exact", "monte carlo" or "not run"
    n_a: int
    n_b: int
    warning: str | None


@dataclass(frozen=True)
class DirectionFlip:
    """Intersection-union test of slope A > 0 and slope B < 0."""

    p_a_positive: float
    p_b_negative: float
    p: float  # max of the two one-sided p-values
    flips: bool | None  # None when the test cannot be run (one seed for E3)
    method: str


def _check_trajectories(erank: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(erank, dtype=np.float64)
    if array.ndim != 3:
        raise AblateError(f"{name} has shape {array.shape}; expected (n_seeds, n_sequences, "
                          "n_iters)")
    if not np.all(np.isfinite(array)):
        raise AblateError(f"{name} contains NaN/inf; drop or impute missing sequences first")
    return array


def iteration_weights(n_iters: int, start: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(slope weights, last-minus-first weights), each (n_iters,), zero before ``start``."""
    used = np.arange(start, n_iters, dtype=np.float64)
    if used.size < 2:
        raise AblateError(f"{n_iters} iterate(s) with start={start}: a slope over iterations "
                          f"needs >= 2 iterations from {start}; run with more iterations")
    slope = np.zeros(n_iters)
    centred = used - used.mean()
    slope[start:] = centred / np.sum(centred**2)
    change = np.zeros(n_iters)
    change[start], change[-1] = -1.0, 1.0
    return slope, change


def erank_trend(erank: np.ndarray, *, rng: np.random.Generator, start: int = 1,
                level: float = 0.95, n_boot: int = 2000) -> IterationTrend:
    """Slope and T-minus-``start`` change of erank (n_seeds, n_sequences, n_iters)."""
    erank = _check_trajectories(erank, "erank")
    slope_w, change_w = iteration_weights(erank.shape[2], start)
    slope = mean_interval(erank @ slope_w, rng=rng, level=level, n_boot=n_boot)
    change = mean_interval(erank @ change_w, rng=rng, level=level, n_boot=n_boot)
    return IterationTrend(slope=slope, last_minus_first=change,
                          iterations=tuple(range(start, erank.shape[2])),
                          per_seed_trajectory=erank.mean(axis=1))


def compare_heads_paired(erank_a: np.ndarray, erank_b: np.ndarray, *, rng: np.random.Generator,
                         start: int = 1, level: float = 0.95,
                         n_boot: int = 2000) -> TwoWayResult:
    """Heads swapped at evaluation on the same checkpoints and sequences: slope(A) - slope(B),
    both (n_seeds, n_sequences, n_iters); paired per seed and sequence, two-way interval."""
    erank_a = _check_trajectories(erank_a, "erank_a")
    erank_b = _check_trajectories(erank_b, "erank_b")
    if erank_a.shape != erank_b.shape:
        raise AblateError(f"paired heads differ in shape {erank_a.shape} vs {erank_b.shape}; "
                          "they must share checkpoints, sequences and T")
    slope_w, _ = iteration_weights(erank_a.shape[2], start)
    return mean_interval((erank_a - erank_b) @ slope_w, rng=rng, level=level, n_boot=n_boot)


def compare_heads_unpaired(slopes_a: np.ndarray, slopes_b: np.ndarray, *,
                           rng: np.random.Generator, level: float = 0.95) -> UnpairedComparison:
    """Heads fixed at training: per-checkpoint slopes (n_a,) vs (n_b,), unit = checkpoint.

    Welch t always; an exact permutation p on the mean difference when both arms have >= 4
    checkpoints (3 vs 3 cannot reach p < 0.1); ``rng`` is used only when the number of
    splits exceeds MAX_EXACT_SPLITS."""
    a = np.asarray(slopes_a, dtype=np.float64).ravel()
    b = np.asarray(slopes_b, dtype=np.float64).ravel()
    if a.size < 2 or b.size < 2:
        raise AblateError(f"Welch t needs >= 2 checkpoints per head, got {a.size} and {b.size}")
    welch = stats.ttest_ind(a, b, equal_var=False)
    var_a, var_b = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    welch_df = (var_a + var_b) ** 2 / (var_a**2 / (a.size - 1) + var_b**2 / (b.size - 1))
    estimate = float(a.mean() - b.mean())
    half = float(stats.t.ppf(1 - (1 - level) / 2, welch_df) * math.sqrt(var_a + var_b))
    warning = None
    p_perm, method = math.nan, "not run"
    if min(a.size, b.size) < MIN_PER_ARM:
        warning = (f"only {a.size} vs {b.size} checkpoints: Welch t with so few checkpoints is "
                   f"fragile and no permutation p is given; train >= {MIN_PER_ARM} per head")
    else:
        p_perm, method = _permutation_p(a, b, rng)
    return UnpairedComparison(estimate=estimate, interval=(estimate - half, estimate + half),
                              welch_t=float(welch.statistic),
                              welch_df=float(welch_df), p_welch=float(welch.pvalue),
                              p_permutation=p_perm, permutation_method=method, n_a=a.size,
                              n_b=b.size, warning=warning)


def _permutation_p(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided permutation p of |mean(A) - mean(B)| over relabelings of the pooled slopes."""
    pooled = np.concatenate([a, b])
    n, n_a = pooled.size, a.size
    observed = abs(a.mean() - b.mean())
    if math.comb(n, n_a) <= MAX_EXACT_SPLITS:
        members = np.zeros((math.comb(n, n_a), n), dtype=bool)
        for row, chosen in enumerate(itertools.combinations(range(n), n_a)):
            members[row, list(chosen)] = True
        method = "exact"
    else:
        order = np.argsort(rng.random((MAX_EXACT_SPLITS, n)), axis=1)
        members = np.zeros((MAX_EXACT_SPLITS, n), dtype=bool)
        np.put_along_axis(members, order[:, :n_a], True, axis=1)
        method = "monte carlo"
    sum_a = members @ pooled
    differences = np.abs(sum_a / n_a - (pooled.sum() - sum_a) / (n - n_a))
    # A small tolerance keeps ties with the observed split from being lost to rounding.
    extreme = np.count_nonzero(differences >= observed - 1e-12 * max(1.0, observed))
    if method == "exact":
        return float(extreme / members.shape[0]), method
    return float((extreme + 1) / (members.shape[0] + 1)), method


def direction_flip(slope_a: TwoWayResult, slope_b: TwoWayResult, *, alpha: float = 0.05,
                   method: str = "e3") -> DirectionFlip:
    """Intersection-union: the direction flips only if slope A > 0 and slope B < 0 both
    reject at ``alpha`` (``method`` "e3" across seeds, "e1" for these checkpoints)."""
    p_a = slope_a.p_greater(method)
    p_b = slope_b.p_less(method)
    p = max(p_a, p_b) if math.isfinite(p_a) and math.isfinite(p_b) else math.nan
    flips: bool | None = bool(p < alpha) if math.isfinite(p) else None
    label = f"intersection-union of one-sided {method.upper()} tests"
    if flips is None and method == "e3":
        label += f" ({ONE_SEED_REASON})"
    return DirectionFlip(p_a_positive=p_a, p_b_negative=p_b, p=p, flips=flips, method=label)
