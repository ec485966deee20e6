"""Question 4: does effective rank follow reasoning depth, once length is accounted for?

Length confounds effective rank (longer solutions have more annotations and more tokens),
so the primary estimand is the depth coefficient of ``erank ~ depth + log(n_tokens)``
per seed: E1 from the pooled model with ``C(seed)`` and problem-clustered errors, E3 from
the two-way interval on the per-seed adjusted slopes (weighted least squares on bootstrap
counts). Kendall tau-b and the partial Spearman correlation (controlling log n_tokens) on
the seed-mean erank add rank-based views with problem-bootstrap intervals. Use all
problems: conditioning on correctness is a collider.

    >>> result = depth_association(erank, depth, n_tokens,
    ...                            rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> result.adjusted_slope.e3, result.n_excluded  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from ablate.errors import AblateError
from ablate.stats.intervals import (
    TwoWayResult,
    bootstrap_indices,
    check_seed_item_array,
    counts_from_indices,
    interval_from_replicates,
)
from ablate.stats.trend import ModelFit, model_coefficient

MAX_LEVELS = 200  # beyond this many depth values the per-replicate Kendall is cheaper


@dataclass(frozen=True)
class RankAssociation:
    """A rank correlation on the seed-mean erank with a problem-bootstrap percentile interval."""

    estimate: float
    interval: tuple[float, float]
    p: float
    method: str


@dataclass(frozen=True)
class DepthResult:
    """Q4: erank per unit depth, adjusted for log n_tokens (units: erank per annotation)."""

    adjusted_slope: TwoWayResult  # E3 two-way on per-seed adjusted slopes; e1 = bootstrap
    adjusted_slope_ols: ModelFit | None  # E1: pooled OLS with C(seed), clustered by problem
    kendall_tau_b: RankAssociation | None  # depth vs seed-mean erank (unadjusted)
    partial_spearman: RankAssociation | None  # depth vs seed-mean erank given log n_tokens
    n_items: int  # problems used
    n_excluded: int  # problems dropped because their depth is unknown (NA)
    length_adjusted: bool  # False when n_tokens is constant (nothing to adjust for)


def _weighted_ols_slopes(weights: np.ndarray, design: np.ndarray,
                         outcome: np.ndarray) -> np.ndarray:
    """Coefficient 1 of per-seed weighted least squares: weights (B, n), design (n, p),
    outcome (n_seeds, n) -> (B, n_seeds)."""
    n_items, n_cols = design.shape
    outer = (design[:, :, None] * design[:, None, :]).reshape(n_items, n_cols * n_cols)
    gram = (weights @ outer).reshape(-1, n_cols, n_cols)  # (B, p, p)
    cross = design[:, :, None] * outcome.T[:, None, :]  # (n, p, S)
    moments = (weights @ cross.reshape(n_items, -1)).reshape(-1, n_cols, outcome.shape[0])
    try:
        coefficients = np.linalg.solve(gram, moments)  # (B, p, S)
    except np.linalg.LinAlgError:
        # A replicate that drew a single depth value has no slope; the pseudo-inverse keeps
        # the batch going and such replicates are vanishingly rare at realistic n.
        coefficients = np.linalg.pinv(gram) @ moments
    return coefficients[:, 1, :]


def weighted_kendall_tau_b(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Kendall tau-b of x and y (n,) on each weighted sample, weights (B, n) item counts ->
    (B,): equal to scipy's tau-b on the resampled rows when y has no ties.

    Pairs of distinct levels of x are counted level by level with cumulative sums in y
    order, so the cost is O(levels x B x n) instead of a Python loop over replicates."""
    order = np.argsort(y, kind="stable")
    x_sorted, w = x[order], weights[:, order]  # items in increasing y
    levels = np.unique(x_sorted)
    score = np.zeros(w.shape[0])  # concordant minus discordant pairs
    for level in levels[:-1]:
        higher = w * (x_sorted > level)
        below = np.cumsum(higher, axis=1) - higher  # higher-x weight with smaller y
        above = higher.sum(axis=1, keepdims=True) - below - higher
        in_level = x_sorted == level
        score += np.sum(w[:, in_level] * (above - below)[:, in_level], axis=1)
    total = w.sum(axis=1)
    pairs = total * (total - 1) / 2
    level_weights = np.stack([w[:, x_sorted == level].sum(axis=1) for level in levels], axis=1)
    ties_x = np.sum(level_weights * (level_weights - 1) / 2, axis=1)
    ties_y = np.sum(w * (w - 1) / 2, axis=1)  # copies of one item tie in y
    with np.errstate(invalid="ignore", divide="ignore"):
        return score / np.sqrt((pairs - ties_x) * (pairs - ties_y))


def _ranks(values: np.ndarray) -> np.ndarray:
    return stats.rankdata(values, axis=-1)


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    # A replicate that drew one depth value has no correlation: NaN, dropped from intervals.
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(axis=-1) / np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1))


def _partial_spearman(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Spearman correlation of x and y given z; rows are samples, shape (..., n)."""
    rx, ry, rz = _ranks(x), _ranks(y), _ranks(z)
    r_xy, r_xz, r_yz = _pearson_rows(rx, ry), _pearson_rows(rx, rz), _pearson_rows(ry, rz)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))


def _percentile(replicates: np.ndarray, level: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:  # e.g. a rank correlation of three items: undefined in every replicate
        return math.nan, math.nan
    alpha = 1 - level
    return float(np.quantile(finite, alpha / 2)), float(np.quantile(finite, 1 - alpha / 2))


def _bootstrap_p(replicates: np.ndarray) -> float:
    finite = replicates[np.isfinite(replicates)]
    low = (1 + np.count_nonzero(finite <= 0)) / (1 + finite.size)
    high = (1 + np.count_nonzero(finite >= 0)) / (1 + finite.size)
    return float(min(1.0, 2 * min(low, high)))


def _ols_cluster(erank: np.ndarray, depth: np.ndarray, log_tokens: np.ndarray | None,
                 level: float) -> ModelFit:
    n_seeds, n_items = erank.shape
    table = pd.DataFrame({"erank": erank.ravel(), "depth": np.tile(depth, n_seeds),
                          "seed": np.repeat(np.arange(n_seeds), n_items),
                          "problem": np.tile(np.arange(n_items), n_seeds)})
    formula = "erank ~ depth + C(seed)"
    if log_tokens is not None:
        table["log_n_tokens"] = np.tile(log_tokens, n_seeds)
        formula = "erank ~ depth + log_n_tokens + C(seed)"
    method = f"OLS {formula}, problem-clustered SE, t reference"
    n_params = 2 + (log_tokens is not None) + (n_seeds - 1)
    if table.shape[0] <= n_params:  # no residual degrees of freedom (e.g. a partial run)
        return ModelFit(math.nan, (math.nan, math.nan), math.nan, method,
                        f"{table.shape[0]} rows for {n_params} parameters: no residual "
                        "degrees of freedom")
    with np.errstate(invalid="ignore", divide="ignore"):
        fit = smf.ols(formula, table).fit(cov_type="cluster",
                                          cov_kwds={"groups": table["problem"].to_numpy()},
                                          use_t=True)
    return model_coefficient(fit, "depth", level=level, method=method)


def depth_association(erank: np.ndarray, depth: np.ndarray, n_tokens: np.ndarray, *,
                      rng: np.random.Generator, level: float = 0.95, n_boot: int = 2000,
                      rank_statistics: bool = True, model_e1: bool = True) -> DepthResult:
    """Q4. erank (n_seeds, n_items) per problem (e.g. at the final iteration), depth
    (n_items,) with NaN for unknown (excluded and counted), n_tokens (n_items,) > 0.
    ``rank_statistics=False`` skips Kendall and partial Spearman (their bootstraps are the
    slow part; simulations of the adjusted slope do not need them); ``model_e1=False`` skips
    the statsmodels fit (adjusted_slope_ols is then None)."""
    erank = check_seed_item_array(erank, "erank")
    depth = np.asarray(depth, dtype=np.float64).ravel()
    n_tokens = np.asarray(n_tokens, dtype=np.float64).ravel()
    if depth.shape[0] != erank.shape[1] or n_tokens.shape[0] != erank.shape[1]:
        raise AblateError(f"depth {depth.shape} and n_tokens {n_tokens.shape} must have one "
                          f"entry per item of erank {erank.shape}")
    known = np.isfinite(depth)
    n_excluded = int(np.count_nonzero(~known))
    erank, depth, n_tokens = erank[:, known], depth[known], n_tokens[known]
    if depth.size < 3 or np.ptp(depth) == 0:
        raise AblateError(f"depth is known for {depth.size} item(s) with "
                          f"{np.unique(depth).size} distinct value(s); Q4 needs >= 3 items and "
                          ">= 2 depths")
    if np.any(n_tokens <= 0) or not np.all(np.isfinite(n_tokens)):
        raise AblateError("n_tokens must be positive and finite for every item with a depth")
    log_tokens = np.log(n_tokens)
    length_adjusted = bool(np.ptp(log_tokens) > 0)
    columns = [np.ones_like(depth), depth] + ([log_tokens] if length_adjusted else [])
    design = np.stack(columns, axis=1)  # (n, p)
    n_items = depth.size
    indices = bootstrap_indices(n_items, n_boot, rng)
    counts = counts_from_indices(indices, n_items)
    point = _weighted_ols_slopes(np.ones((1, n_items)), design, erank)[0]
    replicates = _weighted_ols_slopes(counts, design, erank)
    adjusted = interval_from_replicates(point, replicates, n_items=n_items, level=level)
    ols = (_ols_cluster(erank, depth, log_tokens if length_adjusted else None, level)
           if model_e1 else None)
    kendall, partial = (_rank_associations(erank.mean(axis=0), depth, log_tokens, indices,
                                           length_adjusted, level)
                        if rank_statistics else (None, None))
    return DepthResult(adjusted_slope=adjusted, adjusted_slope_ols=ols, kendall_tau_b=kendall,
                       partial_spearman=partial, n_items=n_items, n_excluded=n_excluded,
                       length_adjusted=length_adjusted)


def _rank_associations(mean_erank: np.ndarray, depth: np.ndarray, log_tokens: np.ndarray,
                       indices: np.ndarray, length_adjusted: bool,
                       level: float) -> tuple[RankAssociation, RankAssociation]:
    """Kendall tau-b and partial Spearman of depth with the seed-mean erank (n_items,), with
    percentile intervals over the problem-bootstrap indices (B, n_items)."""
    tau = stats.kendalltau(depth, mean_erank, variant="b")
    if np.unique(mean_erank).size == mean_erank.size and np.unique(depth).size <= MAX_LEVELS:
        counts = counts_from_indices(indices, depth.size)
        tau_replicates = weighted_kendall_tau_b(depth, mean_erank, counts)
    else:  # ties in erank or a near-continuous depth: the exact per-replicate route
        tau_replicates = np.array([stats.kendalltau(depth[row], mean_erank[row],
                                                    variant="b").statistic for row in indices])
    kendall = RankAssociation(float(tau.statistic), _percentile(tau_replicates, level),
                              float(tau.pvalue), "Kendall tau-b, depth vs seed-mean erank; "
                              "scipy p, problem-bootstrap percentile interval")
    control = log_tokens if length_adjusted else np.zeros_like(log_tokens)
    if length_adjusted:
        partial_point = float(_partial_spearman(depth, mean_erank, control))
        partial_replicates = _partial_spearman(depth[indices], mean_erank[indices],
                                               control[indices])
        method = "partial Spearman given log n_tokens, problem bootstrap"
    else:
        partial_point = float(stats.spearmanr(depth, mean_erank).statistic)
        partial_replicates = _pearson_rows(_ranks(depth[indices]), _ranks(mean_erank[indices]))
        method = "Spearman (n_tokens constant: nothing to partial out), problem bootstrap"
    partial = RankAssociation(partial_point, _percentile(partial_replicates, level),
                              _bootstrap_p(partial_replicates), method)
    return kendall, partial


def depth_agreement(depth_a: np.ndarray, depth_b: np.ndarray) -> dict[str, float | int]:
    """How well two depth measures (n_items,) agree on items where both are known:
    Kendall tau-b, Spearman rho, and the share of items with equal values."""
    a = np.asarray(depth_a, dtype=np.float64).ravel()
    b = np.asarray(depth_b, dtype=np.float64).ravel()
    both = np.isfinite(a) & np.isfinite(b)
    a, b = a[both], b[both]
    if a.size < 3:
        return {"n_items": int(a.size), "kendall_tau_b": float("nan"),
                "spearman": float("nan"), "share_equal": float("nan")}
    return {"n_items": int(a.size),
            "kendall_tau_b": float(stats.kendalltau(a, b, variant="b").statistic),
            "spearman": float(stats.spearmanr(a, b).statistic),
            "share_equal": float(np.mean(a == b))}
