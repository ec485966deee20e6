"""Question 1: does accuracy fall as the projection rank k falls?

The headline estimand is the change in accuracy (percentage points) per halving of k: the
per-seed OLS slope of y on log2 k with its sign flipped (slopes are per doubling), so a
negative number means accuracy falls when k is halved. With the same items at every k this
slope is an item mean of per-item contrasts, so the paired two-way interval applies
directly (E3). E1 comes from a linear probability model with problem-clustered errors;
the GEE odds ratio per doubling, Page's trend test over seeds and the intersection-union
monotonicity verdict complete it.

    >>> result = accuracy_trend({1: acc1, 2: acc2, 4: acc4},
    ...                         rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> result.slope.estimate, result.slope.e3, result.monotone_e3  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats

from ablate.errors import AblateError
from ablate.stats.intervals import (
    TwoWayResult,
    check_seed_item_array,
    mean_interval,
    paired_difference,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFit:
    """One coefficient of a fitted model: estimate, interval at ``level``, two-sided p."""

    estimate: float
    interval: tuple[float, float]
    p: float
    method: str
    note: str | None = None


@dataclass(frozen=True)
class PageResult:
    """Page's L over the seeds x k table (H1: accuracy increases with k)."""

    statistic: float
    p: float
    method: str


@dataclass(frozen=True)
class AdjacentContrast:
    """acc(k_high) - acc(k_low) for neighbouring ks; one-sided p for H1: it is > 0."""

    k_low: int
    k_high: int
    result: TwoWayResult
    p_one_e1: float
    p_one_e3: float


@dataclass(frozen=True)
class TrendResult:
    """Q1 trend over k. Units: ``scale`` x outcome (100 -> percentage points)."""

    ks: tuple[int, ...]
    scale: float
    slope: TwoWayResult  # change per halving of k (< 0: falls); e1 is the problem bootstrap
    slope_ols: ModelFit  # E1 per halving: y ~ log2k + C(seed), clustered by problem
    odds_ratio: ModelFit | None  # GEE Binomial, per doubling of k (binary outcomes only)
    page: PageResult | None
    adjacent: tuple[AdjacentContrast, ...]
    monotone_e1: bool
    monotone_e3: bool | None
    per_seed_means: np.ndarray  # (n_seeds, n_ks), scaled outcome means
    notes: tuple[str, ...]


def _stack_by_k(values_by_k: dict[int, np.ndarray]) -> tuple[tuple[int, ...], np.ndarray]:
    """Sorted ks and the (n_seeds, n_ks, n_items) stack of their arrays."""
    if len(values_by_k) < 2:
        raise AblateError(f"a trend over k needs >= 2 values of k, got {sorted(values_by_k)}")
    ks = tuple(sorted(int(k) for k in values_by_k))
    if ks[0] < 1:
        raise AblateError(f"rank k must be >= 1, got {ks}")
    arrays = [check_seed_item_array(values_by_k[k], f"values at k={k}") for k in ks]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise AblateError(f"arrays for k={ks} differ in shape {sorted(shapes)}; align them on "
                          "the same seeds and items (ablate.stats.frames)")
    return ks, np.stack(arrays, axis=1)


def halving_weights(ks: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """(n_ks,) weights w with sum_k w_k mean_k = OLS slope of mean on log2 k, per halving."""
    x = np.log2(np.asarray(ks, dtype=np.float64))
    centred = x - x.mean()
    return -scale * centred / np.sum(centred**2)


def _long_table(stacked: np.ndarray, ks: tuple[int, ...]) -> pd.DataFrame:
    n_seeds, n_ks, n_items = stacked.shape
    return pd.DataFrame({
        "y": stacked.ravel(),
        "seed": np.repeat(np.arange(n_seeds), n_ks * n_items),
        "log2k": np.tile(np.repeat(np.log2(np.asarray(ks, dtype=np.float64)), n_items), n_seeds),
        "problem": np.tile(np.arange(n_items), n_seeds * n_ks),
    })


# A coefficient variance below (ROUNDING x the spread of y per unit of x)^2 is rounding noise.
ROUNDING = 1e-8


def model_coefficient(fit: Any, name: str, *, level: float, method: str,
                      scale: float = 1.0) -> ModelFit:
    """``scale`` x coefficient ``name`` of a fitted statsmodels regression, with its interval
    at ``level`` (ends ordered) and two-sided p.

    When the fit is degenerate (e.g. every problem has the same outcome at every k, or the
    model fits exactly) the clustered variance is zero up to rounding: sqrt of a tiny
    negative number would warn, and a tiny positive one would give a p made of rounding.
    Such a fit gets a NaN interval and p with a note instead."""
    column = list(fit.model.exog_names).index(name)
    estimate = scale * float(fit.params[name])
    variance = float(np.asarray(fit.cov_params())[column, column])
    spread_x = float(np.std(fit.model.exog[:, column]))
    unit = float(np.std(fit.model.endog)) / spread_x if spread_x > 0 else 0.0
    if not variance > (ROUNDING * unit) ** 2:
        return ModelFit(estimate, (math.nan, math.nan), math.nan, method,
                        note=f"the clustered variance of the {name} coefficient is zero up "
                             "to rounding (a degenerate fit: e.g. the outcome does not vary "
                             f"with {name} within any problem): no model interval or p")
    with np.errstate(invalid="ignore", divide="ignore"):
        low, high = sorted(scale * fit.conf_int(alpha=1 - level).loc[name].to_numpy())
        p = float(fit.pvalues[name])
    return ModelFit(estimate, (float(low), float(high)), p, method)


def _ols_cluster(table: pd.DataFrame, scale: float, level: float) -> ModelFit:
    # A constant outcome (e.g. 0% accuracy everywhere) has zero variance: NaN p, no warning.
    with np.errstate(invalid="ignore", divide="ignore"):
        fit = smf.ols("y ~ log2k + C(seed)", table).fit(
            cov_type="cluster", cov_kwds={"groups": table["problem"].to_numpy()}, use_t=True)
    return model_coefficient(fit, "log2k", level=level, scale=-scale,
                             method="OLS y ~ log2k + C(seed), problem-clustered SE, "
                                    "t reference")


def _gee_odds_ratio(table: pd.DataFrame, level: float) -> ModelFit:
    method = "GEE Binomial y ~ log2k + C(seed), groups=problem, exchangeable"
    if table["y"].nunique() < 2:
        return ModelFit(math.nan, (math.nan, math.nan), math.nan, method,
                        "outcome is constant: no odds ratio")
    try:
        with warnings.catch_warnings(record=True) as caught, \
                np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            warnings.simplefilter("always")
            fit = smf.gee("y ~ log2k + C(seed)", groups="problem", data=table,
                          family=sm.families.Binomial(),
                          cov_struct=sm.cov_struct.Exchangeable()).fit()
            low, high = fit.conf_int(alpha=1 - level).loc["log2k"]
            p = float(fit.pvalues["log2k"])
        note = "; ".join(sorted({str(w.message).splitlines()[0] for w in caught})) or None
        return ModelFit(estimate=float(np.exp(fit.params["log2k"])),
                        interval=(float(np.exp(low)), float(np.exp(high))),
                        p=p, method=method, note=note)
    except (ValueError, np.linalg.LinAlgError, ZeroDivisionError) as error:
        logger.warning("GEE odds ratio failed: %s", error)
        return ModelFit(math.nan, (math.nan, math.nan), math.nan, method, f"GEE failed: {error}")


def _page(per_seed_means: np.ndarray) -> PageResult | None:
    n_seeds, n_ks = per_seed_means.shape
    if n_seeds < 2 or n_ks < 3:
        return None
    result = stats.page_trend_test(per_seed_means)
    return PageResult(float(result.statistic), float(result.pvalue), str(result.method))


def accuracy_trend(values_by_k: dict[int, np.ndarray], *, rng: np.random.Generator,
                   level: float = 0.95, n_boot: int = 2000, alpha: float = 0.05,
                   scale: float = 100.0, gee: bool | None = None) -> TrendResult:
    """Q1 trend. ``values_by_k[k]`` is (n_seeds, n_items), the per-item outcome (0/1 for
    accuracy) of every seed at rank k, items aligned. ``scale`` 100 reports percentage points
    (use 1 for log-likelihoods). ``gee`` None fits the odds ratio only for 0/1 outcomes."""
    ks, stacked = _stack_by_k(values_by_k)  # (n_seeds, n_ks, n_items)
    n_seeds = stacked.shape[0]
    binary = bool(np.all((stacked == 0) | (stacked == 1)))
    notes: list[str] = []
    # Balanced items: the per-seed slope is the item mean of these per-item contrasts.
    per_item_slope = np.einsum("k,skn->sn", halving_weights(ks, scale), stacked)
    slope = mean_interval(per_item_slope, rng=rng, level=level, n_boot=n_boot)
    table = _long_table(stacked, ks)
    slope_ols = _ols_cluster(table, scale, level)
    if slope_ols.note:
        notes.append(f"E1 model: {slope_ols.note}")
    fit_gee = binary if gee is None else gee
    if fit_gee and not binary:
        raise AblateError("gee=True needs a 0/1 outcome; pass gee=None for other outcomes")
    odds_ratio = _gee_odds_ratio(table, level) if fit_gee else None
    per_seed_means = scale * stacked.mean(axis=2)
    page = _page(per_seed_means)
    if page is None:
        notes.append("Page's trend test needs >= 2 seeds and >= 3 values of k: not run")
    adjacent = []
    for k_low, k_high in zip(ks[:-1], ks[1:], strict=True):
        i, j = ks.index(k_low), ks.index(k_high)
        contrast = paired_difference(scale * stacked[:, j], scale * stacked[:, i], rng=rng,
                                     level=level, n_boot=n_boot)
        adjacent.append(AdjacentContrast(k_low, k_high, contrast, contrast.p_greater("e1"),
                                         contrast.p_greater("e3")))
    # Intersection-union: monotone only if every adjacent one-sided contrast rejects.
    monotone_e1 = all(c.p_one_e1 < alpha for c in adjacent)
    monotone_e3: bool | None = all(c.p_one_e3 < alpha for c in adjacent)
    if n_seeds < 2:
        monotone_e3 = None
        notes.append("one seed: description only, no inference across seeds")
    return TrendResult(ks=ks, scale=scale, slope=slope, slope_ols=slope_ols, odds_ratio=odds_ratio,
                       page=page, adjacent=tuple(adjacent), monotone_e1=monotone_e1,
                       monotone_e3=monotone_e3, per_seed_means=per_seed_means, notes=tuple(notes))


def unablated_contrast(unablated: np.ndarray, values_by_k: dict[int, np.ndarray], *,
                       rng: np.random.Generator, k: int | None = None, level: float = 0.95,
                       n_boot: int = 2000, scale: float = 100.0) -> TwoWayResult:
    """Unablated minus rank-k (default: the largest k), both (n_seeds, n_items), scaled."""
    reference_k = max(values_by_k) if k is None else k
    if reference_k not in values_by_k:
        raise AblateError(f"k={reference_k} not among the ranks {sorted(values_by_k)}")
    unablated = check_seed_item_array(unablated, "unablated")
    reference = check_seed_item_array(values_by_k[reference_k], f"values at k={reference_k}")
    return paired_difference(scale * unablated, scale * reference, rng=rng, level=level,
                             n_boot=n_boot)
