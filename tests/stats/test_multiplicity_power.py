"""Holm and BH against hand computations; power table and variance components."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablate.errors import AblateError
from ablate.stats.multiplicity import benjamini_hochberg, holm
from ablate.stats.power import (
    mde_table,
    minimum_detectable_effect,
    t_test_power,
    variance_components,
)


def test_holm_by_hand_and_nan_is_not_a_test() -> None:
    # p sorted: 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04).
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([np.nan, 0.02, 0.5])
    assert math.isnan(adjusted[0]) and adjusted[1:].tolist() == pytest.approx([0.04, 0.5])
    assert holm([0.9, 0.8]).tolist() == pytest.approx([1.0, 1.0])  # 2 * 0.8 capped at 1


def test_benjamini_hochberg_by_hand() -> None:
    # m = 4: p*m/rank = 0.04, 0.04, 0.04, 0.2 then the running minimum from the top.
    assert benjamini_hochberg([0.01, 0.02, 0.03, 0.2]).tolist() == pytest.approx(
        [0.04, 0.04, 0.04, 0.2])
    assert benjamini_hochberg([]).size == 0


def test_minimum_detectable_effect_matches_the_protocol_table() -> None:
    # docs/statistics: 3.26 at S = 3, 2.13 at S = 4, 1.68 at S = 5.
    assert [round(minimum_detectable_effect(s), 2) for s in (3, 4, 5)] == [3.26, 2.13, 1.68]
    assert t_test_power(minimum_detectable_effect(4), 4) == pytest.approx(0.8, abs=1e-6)
    table = mde_table([3, 5])
    assert table["n_seeds"].tolist() == [3, 5]
    with pytest.raises(AblateError):
        minimum_detectable_effect(1)


def test_power_by_simulation_at_the_mde() -> None:
    # A t test on 3 normal per-seed estimates with mean 3.26 SD rejects ~80% of the time.
    rng = np.random.default_rng(0)
    draws = rng.normal(minimum_detectable_effect(3), 1.0, (20_000, 3))
    t = draws.mean(axis=1) / (draws.std(axis=1, ddof=1) / math.sqrt(3))
    assert np.mean(np.abs(t) > 4.302652729911275) == pytest.approx(0.8, abs=0.015)


def test_variance_components_by_expected_mean_squares() -> None:
    values = np.array([[1.0, 2.0, 4.0, 3.0], [2.0, 2.0, 5.0, 5.0], [0.0, 1.0, 3.0, 3.0]])
    s, n = values.shape
    grand = values.mean()
    ms_seed = n * np.sum((values.mean(1) - grand) ** 2) / (s - 1)
    ms_item = s * np.sum((values.mean(0) - grand) ** 2) / (n - 1)
    resid = values - values.mean(1, keepdims=True) - values.mean(0, keepdims=True) + grand
    ms_res = np.sum(resid**2) / ((s - 1) * (n - 1))
    components = variance_components(values)
    assert components.seed == pytest.approx((ms_seed - ms_res) / n)
    assert components.problem == pytest.approx((ms_item - ms_res) / s)
    assert components.residual == pytest.approx(ms_res)
    assert components.per_seed_sd == pytest.approx(np.std(values.mean(1), ddof=1))
    one = variance_components(values[:1])
    assert math.isnan(one.seed) and math.isnan(one.residual)
