"""Q2: SVD minus random draws, bits per byte over documents, Holm across k, TOST."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablate.errors import AblateError
from ablate.stats.controls import (
    bits_per_byte,
    bits_per_byte_contrast,
    control_contrast,
    random_mean,
    svd_vs_random,
)
from ablate.stats.intervals import bootstrap_indices, paired_difference


def test_point_estimate_is_svd_minus_the_draw_mean_per_seed() -> None:
    rng = np.random.default_rng(0)
    svd = rng.random((3, 20))
    random = rng.random((3, 4, 20))
    result = control_contrast(svd, random, rng=rng, n_boot=100)
    expected = svd.mean(axis=1) - random.mean(axis=(1, 2))
    assert result.per_seed == pytest.approx(tuple(expected), rel=1e-12)


def test_one_draw_reduces_to_the_paired_difference_with_the_same_generator() -> None:
    # With R = 1 resampling draws changes nothing, so the replicates are identical.
    data = np.random.default_rng(1)
    svd, random = data.random((3, 30)), data.random((3, 1, 30))
    control = control_contrast(svd, random, rng=np.random.default_rng(9), n_boot=200)
    paired = paired_difference(svd, random[:, 0], rng=np.random.default_rng(9), n_boot=200)
    assert control.e1 == pytest.approx(paired.e1, abs=1e-12)
    assert control.e3 == pytest.approx(paired.e3, abs=1e-12)


def test_draw_to_draw_noise_widens_the_interval() -> None:
    # Draws that disagree strongly add variance that identical draws do not.
    rng = np.random.default_rng(2)
    svd = rng.random((3, 50))
    same = np.repeat(rng.random((3, 1, 50)), 6, axis=1)
    noisy = same + rng.normal(0, 2.0, (3, 6, 1))  # a whole-draw shift per draw
    narrow = control_contrast(svd, same, rng=np.random.default_rng(0), n_boot=400)
    wide = control_contrast(svd, noisy, rng=np.random.default_rng(0), n_boot=400)
    assert (wide.e1[1] - wide.e1[0]) > 2 * (narrow.e1[1] - narrow.e1[0])


def test_bits_per_byte_is_a_ratio_of_sums_and_resamples_documents() -> None:
    rng = np.random.default_rng(3)
    nats = rng.random((2, 15)) * 100
    n_bytes = rng.integers(10, 200, 15).astype(float)
    result = bits_per_byte(nats, n_bytes, rng=np.random.default_rng(4), n_boot=150)
    expected = nats.sum(axis=1) / (math.log(2) * n_bytes.sum())
    assert result.per_seed == pytest.approx(tuple(expected), rel=1e-12)
    # Each replicate is the ratio of sums over the resampled documents (not a mean of ratios).
    indices = bootstrap_indices(15, 150, np.random.default_rng(4))
    direct = np.array([(nats[:, row].sum(axis=1) / (math.log(2) * n_bytes[row].sum())).mean()
                       for row in indices])
    assert np.allclose(result.replicate_means, direct, atol=1e-12)


def test_bits_per_byte_contrast_and_random_mean_point_values() -> None:
    rng = np.random.default_rng(5)
    svd, random = rng.random((3, 12)), rng.random((3, 2, 12))
    n_bytes = np.full(12, 4.0)
    contrast = bits_per_byte_contrast(svd, random, n_bytes, rng=rng, n_boot=100)
    expected = (svd.sum(axis=1) - random.mean(axis=1).sum(axis=1)) / (math.log(2) * 48)
    assert contrast.per_seed == pytest.approx(tuple(expected), rel=1e-12)
    assert random_mean(random, rng=rng, n_boot=100).per_seed == pytest.approx(
        tuple(random.mean(axis=(1, 2))), rel=1e-12)


def _holm_by_hand(p: list[float]) -> list[float]:
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_holm_across_k_and_tost_with_a_margin() -> None:
    rng = np.random.default_rng(6)
    ks = (1, 2, 4)
    svd = {k: (rng.random((3, 80)) < 0.3 + 0.1 * i).astype(float) for i, k in enumerate(ks)}
    random = {k: (rng.random((3, 5, 80)) < 0.3).astype(float) for k in ks}
    result = svd_vs_random(svd, random, rng=rng, margin=2.0, scale=100.0, n_boot=200)
    assert [row.k for row in result.rows] == list(ks)
    p_e3 = [row.result.p_e3 for row in result.rows]
    assert [row.p_holm_e3 for row in result.rows] == pytest.approx(_holm_by_hand(p_e3))
    for row in result.rows:
        assert row.p_tost_e3 == pytest.approx(row.result.tost(2.0, "e3"))
        assert 0 <= row.p_tost_e1 <= 1
    assert result.n_draws == 5
    assert svd_vs_random(svd, random, rng=rng, n_boot=100).rows[0].p_tost_e3 is None


def test_mismatched_draw_arrays_are_user_errors() -> None:
    rng = np.random.default_rng(7)
    with pytest.raises(AblateError, match="n_seeds, n_draws, n_items"):
        control_contrast(np.zeros((2, 5)), np.zeros((2, 5)), rng=rng)
    with pytest.raises(AblateError, match="does not match"):
        control_contrast(np.zeros((2, 5)), np.zeros((3, 2, 5)), rng=rng)
    with pytest.raises(AblateError, match="no k has both"):
        svd_vs_random({1: np.zeros((2, 5))}, {2: np.zeros((2, 2, 5))}, rng=rng)
