"""Power for across-seed claims and the variance components of the data at hand.

An E3 claim is, at its core, a t test on S per-seed estimates with S - 1 degrees of
freedom, so the minimum detectable effect (80% power, two-sided alpha 0.05) in units of
the seed-to-seed SD of the effect is 3.26 at S = 3, 2.13 at S = 4 and 1.68 at S = 5.
Variance components split an (n_seeds, n_items) outcome into seed, problem and residual
parts by the two-way ANOVA method of moments.

    >>> round(minimum_detectable_effect(5), 2)
    1.68
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.polynomial.legendre import leggauss
from scipy import optimize, special, stats

from ablate.errors import AblateError
from ablate.stats.intervals import check_seed_item_array

# Gauss-Legendre nodes on the chi-square probability scale (0, 1) for the power integral.
_NODES, _WEIGHTS = leggauss(128)  # MDE accurate to ~1e-6 SD up to 10 seeds
_PROBABILITIES, _PROBABILITY_WEIGHTS = (_NODES + 1) / 2, _WEIGHTS / 2


def t_test_power(effect_in_sd: float, n_seeds: int, *, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample t test on n_seeds estimates whose true mean is
    ``effect_in_sd`` seed SDs from zero."""
    df = n_seeds - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = effect_in_sd * math.sqrt(n_seeds)
    # Average the normal rejection probability over the chi-square of the SD estimate, on
    # its probability scale: scipy's noncentral t returns NaN for large noncentrality at
    # 1-2 df, exactly where the small-S rows live.
    chi2 = special.chdtri(df, 1 - _PROBABILITIES)
    scale = critical * np.sqrt(chi2 / df)
    rejection = special.ndtr(shift - scale) + special.ndtr(-shift - scale)
    return float(np.sum(_PROBABILITY_WEIGHTS * rejection))


@functools.lru_cache(maxsize=64)
def minimum_detectable_effect(n_seeds: int, *, power: float = 0.8,
                              alpha: float = 0.05) -> float:
    """Smallest effect (in seed-to-seed SDs) detected with ``power`` by the two-sided t test
    with n_seeds - 1 df at ``alpha``."""
    if n_seeds < 2:
        raise AblateError(f"n_seeds={n_seeds}: power across seeds needs >= 2 seeds")
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise AblateError(f"power={power} and alpha={alpha} must lie in (0, 1)")
    return float(optimize.brentq(lambda d: t_test_power(d, n_seeds, alpha=alpha) - power,
                                 1e-6, 1e3, xtol=1e-10))


def mde_table(seed_counts: Iterable[int] = range(2, 11), *, power: float = 0.8,
              alpha: float = 0.05) -> pd.DataFrame:
    """One row per seed count: n_seeds, mde_in_seed_sd."""
    counts = list(seed_counts)
    return pd.DataFrame({"n_seeds": counts,
                         "mde_in_seed_sd": [minimum_detectable_effect(s, power=power, alpha=alpha)
                                            for s in counts]})


@dataclass(frozen=True)
class VarianceComponents:
    """Two-way random-effects variance components of one (n_seeds, n_items) outcome."""

    seed: float  # between-seed variance of the item-level outcome (nan with one seed)
    problem: float  # between-problem variance
    residual: float  # seed x problem interaction plus noise (nan with one seed)
    per_seed_sd: float  # SD of the per-seed means: what an across-seed t test sees
    n_seeds: int
    n_items: int


def variance_components(values: np.ndarray) -> VarianceComponents:
    """Seed, problem and residual variances of values (n_seeds, n_items) from the expected
    mean squares of the balanced two-way layout, truncated at zero."""
    values = check_seed_item_array(values, "values")
    n_seeds, n_items = values.shape
    grand = values.mean()
    seed_means, item_means = values.mean(axis=1), values.mean(axis=0)
    ms_problem = n_seeds * np.sum((item_means - grand) ** 2) / (n_items - 1)
    if n_seeds < 2:
        return VarianceComponents(math.nan, float(np.var(values, ddof=1)), math.nan, math.nan,
                                  n_seeds, n_items)
    ms_seed = n_items * np.sum((seed_means - grand) ** 2) / (n_seeds - 1)
    residuals = values - seed_means[:, None] - item_means[None, :] + grand
    ms_residual = np.sum(residuals**2) / ((n_seeds - 1) * (n_items - 1))
    return VarianceComponents(seed=float(max(0.0, (ms_seed - ms_residual) / n_items)),
                              problem=float(max(0.0, (ms_problem - ms_residual) / n_seeds)),
                              residual=float(ms_residual),
                              per_seed_sd=float(np.std(seed_means, ddof=1)),
                              n_seeds=n_seeds, n_items=n_items)
