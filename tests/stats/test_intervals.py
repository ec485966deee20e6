"""E1/E3 intervals against hand computations in plain numpy float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ablate.errors import AblateError
from ablate.stats.intervals import (
    bootstrap_counts,
    bootstrap_indices,
    counts_from_indices,
    interval_from_replicates,
    mean_interval,
    paired_difference,
    two_way_interval,
    weighted_mean,
)


def test_counts_match_a_loop_over_replicates() -> None:
    # The count matrix is exactly how often each replicate drew each item.
    indices = np.random.default_rng(3).integers(0, 7, size=(40, 7))
    expected = np.zeros((40, 7))
    for b, row in enumerate(indices):
        for j in row:
            expected[b, j] += 1
    assert np.array_equal(counts_from_indices(indices, 7), expected)


def test_chunked_counts_match_for_many_replicates() -> None:
    # More replicates than one bincount chunk holds still count every draw.
    indices = np.random.default_rng(4).integers(0, 3, size=(50_000, 3))
    counts = counts_from_indices(indices, 3)
    assert counts.shape == (50_000, 3)
    assert np.array_equal(counts[-1], np.bincount(indices[-1], minlength=3))
    assert np.all(counts.sum(axis=1) == 3)


def test_pinned_two_way_interval_on_a_small_replicate_matrix() -> None:
    # V1, sigma_e, v_s, V2, Satterthwaite df and the t interval, written out by hand.
    per_seed = np.array([0.10, 0.30, 0.20])
    replicates = np.array([[0.12, 0.28, 0.22], [0.08, 0.33, 0.18], [0.11, 0.29, 0.25],
                           [0.09, 0.31, 0.17], [0.13, 0.27, 0.21]])
    n_items = 50
    s = 3
    means = replicates.mean(axis=1)
    v1 = np.sum((means - means.mean()) ** 2) / 4
    centred = replicates - replicates.mean(axis=0)
    cov = centred.T @ centred / 4
    off = (cov.sum() - np.trace(cov)) / (s * (s - 1))
    sigma_e = np.trace(cov) / s - off
    v_s = np.sum((per_seed - per_seed.mean()) ** 2) / 2
    v2 = max(0.0, v_s - sigma_e) / s
    var = v1 + v2
    df = var**2 / ((v_s / s) ** 2 / 2 + v1**2 / 49 + (sigma_e / s) ** 2 / (2 * 49))
    half = stats.t.ppf(0.975, df) * math.sqrt(var)
    result = interval_from_replicates(per_seed, replicates, n_items=n_items)
    assert result.estimate == pytest.approx(0.2, abs=1e-15)
    assert result.df_e3 == pytest.approx(df, rel=1e-12)
    assert result.se_e3 == pytest.approx(math.sqrt(var), rel=1e-12)
    assert result.e3 == pytest.approx((0.2 - half, 0.2 + half), rel=1e-12)
    assert result.p_e3 == pytest.approx(2 * stats.t.sf(0.2 / math.sqrt(var), df), rel=1e-10)
    # E1: percentile interval of the replicate seed means; p from the share below zero.
    assert result.e1 == pytest.approx((np.quantile(means, 0.025), np.quantile(means, 0.975)))
    assert result.p_e1 == pytest.approx(2 / 6)


def test_paired_difference_estimate_and_per_seed_values_are_plain_means() -> None:
    a = np.array([[1, 0, 1, 1], [0, 0, 1, 1], [1, 1, 1, 0]], dtype=float)
    b = np.array([[0, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 0]], dtype=float)
    result = paired_difference(a, b, rng=np.random.default_rng(0), n_boot=200)
    assert result.per_seed == pytest.approx((0.5, 0.0, 0.5))
    assert result.estimate == pytest.approx(1 / 3)
    assert (result.n_seeds, result.n_items, result.n_boot) == (3, 4, 200)


def test_bootstrap_replicates_equal_direct_resampling_with_the_same_indices() -> None:
    # The vectorised E1 equals resampling item columns (same for every seed) per replicate.
    rng = np.random.default_rng(11)
    a, b = rng.random((3, 30)), rng.random((3, 30))
    result = paired_difference(a, b, rng=np.random.default_rng(5), n_boot=300)
    indices = bootstrap_indices(30, 300, np.random.default_rng(5))
    direct = np.array([(a[:, row] - b[:, row]).mean() for row in indices])
    assert np.allclose(result.replicate_means, direct, rtol=0, atol=1e-12)
    assert result.e1 == pytest.approx((np.quantile(direct, 0.025), np.quantile(direct, 0.975)))


def test_e3_variance_matches_cornfield_tukey_for_a_paired_mean() -> None:
    # For a paired mean V1 + V2 is (MS_seed + MS_problem - MS_residual) / (S n); the
    # bootstrap estimates of V1 and sigma_e carry Monte-Carlo and (n-1)/n error only.
    rng = np.random.default_rng(2)
    s, n = 4, 300
    d = (rng.normal(0, 0.3, (s, 1)) + rng.normal(0, 1.0, (1, n)) + rng.normal(0, 1.0, (s, n)))
    grand, seed_means, item_means = d.mean(), d.mean(axis=1), d.mean(axis=0)
    ms_seed = n * np.sum((seed_means - grand) ** 2) / (s - 1)
    ms_problem = s * np.sum((item_means - grand) ** 2) / (n - 1)
    residual = d - seed_means[:, None] - item_means[None, :] + grand
    ms_residual = np.sum(residual**2) / ((s - 1) * (n - 1))
    expected = (ms_seed + ms_problem - ms_residual) / (s * n)
    result = paired_difference(d, np.zeros_like(d), rng=np.random.default_rng(0), n_boot=8000)
    assert result.se_e3**2 == pytest.approx(expected, rel=0.05)


def test_one_seed_gives_nan_e3_with_a_reason_and_a_working_e1() -> None:
    rng = np.random.default_rng(0)
    result = paired_difference(rng.random((1, 20)), rng.random((1, 20)), rng=rng, n_boot=100)
    assert math.isnan(result.e3[0]) and math.isnan(result.p_e3) and math.isnan(result.df_e3)
    assert result.e3_reason is not None and "one seed" in result.e3_reason
    assert result.e1[0] <= result.estimate <= result.e1[1]
    assert math.isnan(result.p_greater("e3"))


def test_same_seed_same_output_and_other_seed_other_bootstrap() -> None:
    data = np.random.default_rng(1).random((3, 25))
    first = mean_interval(data, rng=np.random.default_rng(7), n_boot=300)
    second = mean_interval(data, rng=np.random.default_rng(7), n_boot=300)
    third = mean_interval(data, rng=np.random.default_rng(8), n_boot=300)
    assert first == second
    assert first.e1 != third.e1


def test_general_statistic_two_way_interval_uses_the_weights() -> None:
    # A weighted ratio statistic: with unit weights the point estimate is the plain ratio.
    rng = np.random.default_rng(0)
    numerator, denominator = rng.random((3, 40)), 1 + rng.random((3, 40))

    def ratio(weights: np.ndarray, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
        return (weights @ top.T) / (weights @ bottom.T)

    result = two_way_interval(ratio, numerator, denominator, rng=rng, n_boot=200)
    assert result.per_seed == pytest.approx(tuple(numerator.sum(1) / denominator.sum(1)))
    assert result.e3[0] < result.estimate < result.e3[1]


def test_one_sided_and_equivalence_p_values_follow_the_t_reference() -> None:
    rng = np.random.default_rng(3)
    result = paired_difference(rng.random((4, 60)) + 0.2, rng.random((4, 60)), rng=rng,
                               n_boot=400)
    t_value = result.estimate / result.se_e3
    assert result.p_greater() == pytest.approx(stats.t.sf(t_value, result.df_e3))
    assert result.p_less() == pytest.approx(stats.t.cdf(t_value, result.df_e3))
    assert result.tost(100.0) < 1e-6  # a huge margin: clearly equivalent
    assert result.tost(1e-6) > 0.5  # a vanishing margin: never equivalent
    with pytest.raises(AblateError):
        result.tost(0.0)


def test_misaligned_or_non_finite_inputs_are_user_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(AblateError, match="differ in shape"):
        paired_difference(np.zeros((3, 4)), np.zeros((3, 5)), rng=rng)
    with pytest.raises(AblateError, match="NaN"):
        paired_difference(np.full((2, 4), np.nan), np.zeros((2, 4)), rng=rng)
    with pytest.raises(AblateError, match="n_seeds, n_items"):
        mean_interval(np.zeros(4), rng=rng)


def test_weighted_mean_with_unit_weights_is_the_item_mean() -> None:
    values = np.arange(12, dtype=float).reshape(3, 4)
    assert np.allclose(weighted_mean(np.ones((1, 4)), values)[0], values.mean(axis=1))
    counts = bootstrap_counts(4, 10, np.random.default_rng(0))
    assert np.allclose(counts.sum(axis=1), 4)
