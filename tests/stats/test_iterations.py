"""Q3: slopes over iterations, head comparisons, permutation p and the direction flip."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from ablate.errors import AblateError
from ablate.stats.iterations import (
    compare_heads_paired,
    compare_heads_unpaired,
    direction_flip,
    erank_trend,
    iteration_weights,
)


def _linear(slopes_by_seed: np.ndarray, n_sequences: int, n_iters: int,
            embedding: float = 100.0) -> np.ndarray:
    """erank = 2 + slope_s * t exactly, except M(0), set far off the line."""
    t = np.arange(n_iters, dtype=float)
    erank = 2 + slopes_by_seed[:, None, None] * t[None, None, :] + np.zeros((1, n_sequences, 1))
    erank[:, :, 0] = embedding  # M(0) must not enter the slope or the change
    return erank


def test_slope_and_change_skip_the_embedding_and_are_exact_on_lines() -> None:
    slopes = np.array([0.1, 0.2, 0.3])
    trend = erank_trend(_linear(slopes, 5, 6), rng=np.random.default_rng(0), n_boot=50)
    assert trend.slope.per_seed == pytest.approx(tuple(slopes), rel=1e-12)
    assert trend.last_minus_first.per_seed == pytest.approx(tuple(4 * slopes), rel=1e-12)
    assert trend.iterations == (1, 2, 3, 4, 5)
    assert trend.per_seed_trajectory.shape == (3, 6)


def test_iteration_weights_need_two_iterations() -> None:
    slope, change = iteration_weights(4, start=1)
    assert slope[0] == 0 and slope.sum() == pytest.approx(0)
    assert change.tolist() == [0.0, -1.0, 0.0, 1.0]
    with pytest.raises(AblateError, match="more iterations"):
        iteration_weights(2, start=1)


def test_paired_heads_difference_of_slopes() -> None:
    a = _linear(np.array([0.3, 0.4]), 4, 5)
    b = _linear(np.array([-0.1, 0.1]), 4, 5)
    result = compare_heads_paired(a, b, rng=np.random.default_rng(1), n_boot=50)
    assert result.per_seed == pytest.approx((0.4, 0.3), rel=1e-12)
    with pytest.raises(AblateError, match="differ in shape"):
        compare_heads_paired(a, b[:, :3], rng=np.random.default_rng(1))


def test_unpaired_heads_match_welch_and_a_brute_force_permutation() -> None:
    a = np.array([0.31, 0.25, 0.4, 0.28])
    b = np.array([0.05, -0.02, 0.1, 0.12, 0.0])
    result = compare_heads_unpaired(a, b, rng=np.random.default_rng(0))
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert result.welch_t == pytest.approx(welch.statistic)
    assert result.p_welch == pytest.approx(welch.pvalue)
    pooled = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    hits = total = 0
    for chosen in itertools.combinations(range(9), 4):
        mask = np.zeros(9, dtype=bool)
        mask[list(chosen)] = True
        total += 1
        hits += abs(pooled[mask].mean() - pooled[~mask].mean()) >= observed - 1e-12
    assert result.permutation_method == "exact"
    assert result.p_permutation == pytest.approx(hits / total)
    assert result.warning is None
    low, high = result.interval
    assert low < result.estimate < high


def test_three_checkpoints_per_arm_warn_and_skip_the_permutation() -> None:
    result = compare_heads_unpaired(np.array([1.0, 1.2, 0.9]), np.array([0.1, 0.3, 0.2]),
                                    rng=np.random.default_rng(0))
    assert result.warning is not None and "4" in result.warning
    assert math.isnan(result.p_permutation) and result.permutation_method == "not run"


def test_direction_flip_needs_both_one_sided_tests() -> None:
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.01, (4, 30, 6))
    up = erank_trend(_linear(np.array([0.3, 0.35, 0.25, 0.3]), 30, 6) + noise, rng=rng,
                     n_boot=200).slope
    down = erank_trend(_linear(np.array([-0.3, -0.2, -0.25, -0.3]), 30, 6) + noise, rng=rng,
                       n_boot=200).slope
    assert direction_flip(up, down).flips is True
    flipped_wrong_way = direction_flip(down, up)
    assert flipped_wrong_way.flips is False and flipped_wrong_way.p > 0.5
    one_seed = erank_trend(_linear(np.array([0.3]), 30, 6) + noise[:1], rng=rng,
                           n_boot=100).slope
    assert direction_flip(one_seed, down).flips is None
