"""Q1: slope per halving of k, its E1 model, Page's test and the monotonicity verdict."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.errors import AblateError
from ablate.stats.trend import accuracy_trend, halving_weights, unablated_contrast

KS = (1, 2, 4, 8, 16)


def _binary_by_k(rng: np.random.Generator, n_seeds: int, n_items: int,
                 step: float) -> dict[int, np.ndarray]:
    """Accuracy that rises by ``step`` in logit per doubling of k."""
    difficulty = rng.normal(0, 1, n_items)
    return {k: (rng.random((n_seeds, n_items))
                < 1 / (1 + np.exp(-(difficulty + step * np.log2(k))))).astype(float)
            for k in KS}


def test_slope_is_the_per_seed_polyfit_slope_per_halving_in_pp() -> None:
    # The per-item contrast weights reproduce OLS on per-k means; halving flips the sign.
    rng = np.random.default_rng(0)
    values = _binary_by_k(rng, 3, 60, 0.5)
    result = accuracy_trend(values, rng=rng, n_boot=100, gee=False)
    x = np.log2(np.array(KS, dtype=float))
    for seed in range(3):
        means = np.array([values[k][seed].mean() for k in KS])
        per_doubling = np.polyfit(x, means, 1)[0]
        assert result.slope.per_seed[seed] == pytest.approx(-100 * per_doubling, rel=1e-12)
    assert result.slope.estimate < 0  # accuracy falls when k is halved


def test_clustered_ols_slope_equals_the_mean_per_seed_slope() -> None:
    # Balanced items and seed fixed effects: the pooled coefficient is the seed average.
    rng = np.random.default_rng(1)
    values = _binary_by_k(rng, 4, 50, 0.4)
    result = accuracy_trend(values, rng=rng, n_boot=100, gee=False)
    assert result.slope_ols.estimate == pytest.approx(result.slope.estimate, rel=1e-9)
    low, high = result.slope_ols.interval
    assert low < result.slope_ols.estimate < high


def test_halving_weights_sum_to_zero_and_recover_a_linear_trend() -> None:
    weights = halving_weights(KS, scale=1.0)
    assert weights.sum() == pytest.approx(0.0, abs=1e-15)
    # mean = 3 log2 k: per halving the change is -3.
    assert weights @ (3 * np.log2(np.array(KS, dtype=float))) == pytest.approx(-3.0)


def test_gee_odds_ratio_exceeds_one_when_accuracy_rises_with_k() -> None:
    rng = np.random.default_rng(2)
    result = accuracy_trend(_binary_by_k(rng, 3, 150, 0.6), rng=rng, n_boot=100)
    assert result.odds_ratio is not None
    assert result.odds_ratio.interval[0] > 1.0
    # The true conditional odds ratio per doubling is exp(0.6); the marginal one is smaller.
    assert 1.0 < result.odds_ratio.estimate < np.exp(0.6) + 0.2


def test_monotone_verdict_needs_every_adjacent_contrast() -> None:
    # Intersection-union: a flat step between k=4 and k=8 blocks the monotone claim.
    rng = np.random.default_rng(3)
    n_seeds, n_items = 4, 600
    base = rng.normal(0, 0.5, n_items)
    rising = {k: (rng.random((n_seeds, n_items)) < 1 / (1 + np.exp(-(base + np.log2(k)))))
              .astype(float) for k in KS}
    stalling = dict(rising)
    stalling[8] = rising[4].copy()  # no change at all from k=4 to k=8
    assert accuracy_trend(rising, rng=rng, n_boot=200, gee=False).monotone_e3 is True
    result = accuracy_trend(stalling, rng=rng, n_boot=200, gee=False)
    assert result.monotone_e3 is False and result.monotone_e1 is False
    assert [(c.k_low, c.k_high) for c in result.adjacent] == [(1, 2), (2, 4), (4, 8), (8, 16)]


def test_page_test_runs_on_the_seed_by_k_table_and_is_skipped_for_one_seed() -> None:
    rng = np.random.default_rng(4)
    result = accuracy_trend(_binary_by_k(rng, 3, 80, 1.0), rng=rng, n_boot=100, gee=False)
    assert result.page is not None and result.page.p < 0.05
    assert result.per_seed_means.shape == (3, 5)
    one = accuracy_trend(_binary_by_k(rng, 1, 80, 1.0), rng=rng, n_boot=100, gee=False)
    assert one.page is None and one.monotone_e3 is None
    assert any("one seed" in note for note in one.notes)


def test_unablated_contrast_uses_the_largest_k_and_percentage_points() -> None:
    rng = np.random.default_rng(5)
    values = _binary_by_k(rng, 3, 40, 0.5)
    unablated = np.ones((3, 40))
    result = unablated_contrast(unablated, values, rng=rng, n_boot=100)
    assert result.estimate == pytest.approx(100 * (1 - values[16].mean()))
    with pytest.raises(AblateError, match="k=3"):
        unablated_contrast(unablated, values, rng=rng, k=3)


def test_trend_needs_two_ks_and_aligned_arrays() -> None:
    rng = np.random.default_rng(6)
    with pytest.raises(AblateError, match=">= 2 values of k"):
        accuracy_trend({4: np.zeros((2, 5))}, rng=rng)
    with pytest.raises(AblateError, match="differ in shape"):
        accuracy_trend({1: np.zeros((2, 5)), 2: np.zeros((2, 6))}, rng=rng)
