"""Q4: length-adjusted depth slope, rank associations, exclusion of unknown depth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ablate.errors import AblateError
from ablate.stats.depth import depth_agreement, depth_association, weighted_kendall_tau_b
from ablate.stats.intervals import bootstrap_indices, counts_from_indices


def _data(rng: np.random.Generator, n_seeds: int = 3, n_items: int = 120):
    log_tokens = rng.normal(5, 0.4, n_items)
    depth = rng.poisson(np.exp(1 + 1.5 * (log_tokens - 5))).astype(float)
    erank = (1.0 + 2.0 * log_tokens + 0.1 * depth + rng.normal(0, 0.3, (n_seeds, n_items)))
    return erank, depth, np.exp(log_tokens)


def test_adjusted_slope_per_seed_equals_least_squares() -> None:
    rng = np.random.default_rng(0)
    erank, depth, n_tokens = _data(rng)
    result = depth_association(erank, depth, n_tokens, rng=rng, n_boot=100,
                               rank_statistics=False)
    design = np.column_stack([np.ones_like(depth), depth, np.log(n_tokens)])
    for seed in range(3):
        coefficients = np.linalg.lstsq(design, erank[seed], rcond=None)[0]
        assert result.adjusted_slope.per_seed[seed] == pytest.approx(coefficients[1], rel=1e-9)
    # The pooled model with seed intercepts gives the seed-average coefficient.
    assert result.adjusted_slope_ols.estimate == pytest.approx(result.adjusted_slope.estimate,
                                                               rel=1e-9)
    assert result.kendall_tau_b is None and result.length_adjusted


def test_unknown_depth_is_excluded_and_counted() -> None:
    rng = np.random.default_rng(1)
    erank, depth, n_tokens = _data(rng)
    depth[[0, 5, 9]] = np.nan
    result = depth_association(erank, depth, n_tokens, rng=rng, n_boot=50,
                               rank_statistics=False)
    assert (result.n_items, result.n_excluded) == (117, 3)


def test_rank_associations_match_scipy_and_a_residual_partial_spearman() -> None:
    rng = np.random.default_rng(2)
    erank, depth, n_tokens = _data(rng, n_items=60)
    result = depth_association(erank, depth, n_tokens, rng=rng, n_boot=60)
    mean_erank = erank.mean(axis=0)
    tau = stats.kendalltau(depth, mean_erank, variant="b")
    assert result.kendall_tau_b.estimate == pytest.approx(tau.statistic)
    # Partial Spearman = correlation of rank residuals after regressing on rank(log n).
    ranks = [stats.rankdata(v) for v in (depth, mean_erank, np.log(n_tokens))]
    control = np.column_stack([np.ones(60), ranks[2]])
    residuals = [r - control @ np.linalg.lstsq(control, r, rcond=None)[0] for r in ranks[:2]]
    expected = np.corrcoef(residuals[0], residuals[1])[0, 1]
    assert result.partial_spearman.estimate == pytest.approx(expected, rel=1e-9)
    low, high = result.kendall_tau_b.interval
    assert low <= result.kendall_tau_b.estimate <= high


def test_constant_length_drops_the_adjustment() -> None:
    rng = np.random.default_rng(3)
    erank, depth, _ = _data(rng, n_items=40)
    result = depth_association(erank, depth, np.full(40, 50.0), rng=rng, n_boot=40)
    assert not result.length_adjusted
    assert "constant" in result.partial_spearman.method


def test_constant_depth_is_a_user_error() -> None:
    rng = np.random.default_rng(4)
    with pytest.raises(AblateError, match="distinct"):
        depth_association(np.ones((2, 10)), np.full(10, 3.0), np.arange(1, 11), rng=rng)


def test_depth_agreement_on_items_where_both_are_known() -> None:
    a = np.array([1, 2, 3, 4, np.nan])
    b = np.array([1, 2, 4, 4, 2])
    agreement = depth_agreement(a, b)
    assert agreement["n_items"] == 4
    assert agreement["share_equal"] == pytest.approx(0.75)
    assert agreement["kendall_tau_b"] == pytest.approx(
        stats.kendalltau([1, 2, 3, 4], [1, 2, 4, 4], variant="b").statistic)


def test_vectorised_bootstrap_kendall_equals_scipy_on_resampled_rows() -> None:
    # Duplicated items tie in both variables, exactly as scipy sees the resampled rows.
    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, 50).astype(float)
    y = rng.normal(size=50) + 0.3 * x
    indices = bootstrap_indices(50, 100, rng)
    fast = weighted_kendall_tau_b(x, y, counts_from_indices(indices, 50))
    slow = np.array([stats.kendalltau(x[row], y[row], variant="b").statistic for row in indices])
    assert np.allclose(fast, slow, rtol=0, atol=1e-12)
