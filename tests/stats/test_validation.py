"""Reduced validation grid: intervals cover the truth at their nominal rate in simulation.

Bands are the nominal rate +- 3.5 binomial SE of the replicate count, wide enough that a
change of generator seed does not flip the verdict, narrow enough to catch a broken
interval (problem-only inference for an across-seed claim lands far outside). The full grid
lives in bench/stats_validation.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit

from ablate.stats.simulate import (
    BinaryCell,
    DepthCell,
    ErankCell,
    EvalSeedCell,
    binary_truths,
    depth_study,
    erank_slope_study,
    eval_seed_study,
    eval_seed_truths,
    gaussian_expit_mean,
    paired_binary_study,
    simulate_binary,
    simulate_eval_seeds,
)

N_BOOT = 200


def band(replicates: int, nominal: float, z: float = 3.5) -> tuple[float, float]:
    half = z * math.sqrt(nominal * (1 - nominal) / replicates)
    return nominal - half, nominal + half


def test_gauss_hermite_expectation_matches_numerical_integration() -> None:
    # E[expit(m + Z)], Z ~ N(0, v): quadrature against scipy's adaptive integral.
    for location, variance in [(0.5, 1.7), (-1.2, 0.3), (2.0, 4.0)]:
        sd = math.sqrt(variance)
        expected = integrate.quad(
            lambda z, m=location, s=sd: expit(m + z) * math.exp(-z * z / (2 * s * s))
            / (s * math.sqrt(2 * math.pi)), -12 * sd, 12 * sd)[0]
        assert gaussian_expit_mean(location, variance) == pytest.approx(expected, abs=1e-10)
    assert gaussian_expit_mean(0.0, 2.5) == pytest.approx(0.5, abs=1e-14)  # symmetry


def test_truths_agree_with_a_large_simulated_population() -> None:
    # E1 truth (realised seeds, problems averaged) against a huge sample of problems.
    cell = BinaryCell(n_seeds=3, n_items=400_000, sd_seed=0.3, sd_problem_effect=1.0,
                      mu=0.4, beta=0.5)
    conditions, contrast = np.array([1.0, 0.0]), np.array([1.0, -1.0])
    y, seed_effects = simulate_binary(cell, conditions, rng=np.random.default_rng(0))
    truth_e1, truth_e3 = binary_truths(cell, conditions, contrast, seed_effects)
    observed = (y[:, 0] - y[:, 1]).mean()
    assert observed == pytest.approx(truth_e1, abs=0.004)
    assert truth_e1 != pytest.approx(truth_e3, abs=1e-3)  # seeds matter for the E1 truth
    null = BinaryCell(n_seeds=3, n_items=10, sd_seed=0.3, sd_problem_effect=1.5)
    assert binary_truths(null, conditions, contrast, np.zeros(3))[1] == pytest.approx(0, abs=1e-14)


def test_binary_null_e3_holds_its_rate_where_problem_only_inference_fails() -> None:
    # S=3, seed spread 0.3: E3 keeps ~5% false positives; E1 (right for "these
    # checkpoints") declares across-seed effects far too often and must not be used for E3.
    replicates = 300
    cell = BinaryCell(n_seeds=3, n_items=200, sd_seed=0.3, sd_problem_effect=1.5)
    summary = paired_binary_study(cell, n_replicates=replicates, n_boot=N_BOOT,
                                  rng=np.random.default_rng(2024))
    low, high = band(replicates, 0.05)
    assert low <= summary["reject_e3"] <= high
    assert summary["reject_e1"] > high
    assert band(replicates, 0.95)[0] <= summary["coverage_e1"] <= band(replicates, 0.95)[1]


def test_binary_effect_e1_and_e3_cover_their_truths() -> None:
    replicates = 300
    cell = BinaryCell(n_seeds=5, n_items=200, sd_seed=0.1, sd_problem_effect=1.5, mu=0.5,
                      beta=0.4)
    summary = paired_binary_study(cell, n_replicates=replicates, n_boot=N_BOOT,
                                  rng=np.random.default_rng(7))
    low, high = band(replicates, 0.95)
    assert low <= summary["coverage_e1"] <= high
    assert low <= summary["coverage_e3"] <= high


def test_erank_slope_null_with_seed_spread() -> None:
    # Slopes that vary by seed: the two-way interval holds its rate, E1 does not.
    replicates = 300
    cell = ErankCell(n_seeds=3, n_items=100, sd_seed_slope=0.05)
    summary = erank_slope_study(cell, n_replicates=replicates, n_boot=N_BOOT,
                                rng=np.random.default_rng(11))
    low, high = band(replicates, 0.05)
    assert low <= summary["reject_e3"] <= high
    assert summary["reject_e1"] > high


def test_depth_null_under_length_confounding() -> None:
    # erank depends only on length: raw Spearman almost always "finds" depth, the
    # length-adjusted two-way test does not.
    replicates = 120
    cell = DepthCell(n_seeds=3, n_items=150, sd_seed_effect=0.02)
    summary = depth_study(cell, n_replicates=replicates, n_boot=N_BOOT,
                          rng=np.random.default_rng(5), with_ols=False)
    assert summary["reject_e3"] <= band(replicates, 0.05)[1]
    assert summary["reject_raw_spearman"] > 0.9


def test_eval_seed_truths_agree_with_a_large_simulated_population() -> None:
    # E1 truth of the eval-seed design (realised seed and eval-seed effects, problems
    # averaged) against a huge sample of problems; E3 adds both spreads.
    cell = EvalSeedCell(n_seeds=2, n_items=300_000, n_eval_seeds=3, sd_seed=0.3,
                        sd_problem_effect=1.0, sd_eval=0.4, mu=0.4, beta=0.5)
    conditions, contrast = np.array([1.0, 0.0]), np.array([1.0, -1.0])
    y, seed_effects, eval_effects = simulate_eval_seeds(cell, conditions,
                                                        rng=np.random.default_rng(3))
    truth_e1, truth_e3 = eval_seed_truths(cell, conditions, contrast, seed_effects,
                                          eval_effects)
    assert (y[:, 0] - y[:, 1]).mean() == pytest.approx(truth_e1, abs=0.004)
    binary = BinaryCell(n_seeds=2, n_items=10, sd_seed=0.5, sd_problem_effect=1.0, mu=0.4,
                        beta=0.5)  # sd_seed 0.5 = sqrt(0.3^2 + 0.4^2): the same E3 truth
    assert truth_e3 == pytest.approx(
        binary_truths(binary, conditions, contrast, np.zeros(2))[1], abs=1e-12)


def test_eval_seeds_averaged_per_problem_keep_e1_and_e3_nominal() -> None:
    # How `ablate` analyses several eval seeds: each problem's outcome averaged over them
    # within its training seed. Four eval seeds whose random subspaces shift each seed's
    # effect: both intervals cover their truths at the nominal rate, while counting (eval
    # seed, problem) pairs as separate problems makes E1 far too narrow.
    replicates = 300
    cell = EvalSeedCell(n_seeds=3, n_items=200, n_eval_seeds=4, sd_seed=0.1,
                        sd_problem_effect=1.5, sd_eval=0.3, mu=0.5, beta=0.4)
    summary = eval_seed_study(cell, n_replicates=replicates, n_boot=N_BOOT,
                              rng=np.random.default_rng(21))
    low, high = band(replicates, 0.95)
    assert low <= summary["coverage_e1"] <= high
    assert low <= summary["coverage_e3"] <= high
    assert summary["pooled_coverage_e1"] < low


def test_eval_seeds_averaged_null_e3_holds_its_rate() -> None:
    replicates = 300
    cell = EvalSeedCell(n_seeds=3, n_items=200, n_eval_seeds=4, sd_seed=0.1,
                        sd_problem_effect=1.5, sd_eval=0.3)
    summary = eval_seed_study(cell, n_replicates=replicates, n_boot=N_BOOT,
                              rng=np.random.default_rng(22))
    low, high = band(replicates, 0.05)
    assert low <= summary["reject_e3"] <= high
    assert summary["pooled_reject_e1"] > high
