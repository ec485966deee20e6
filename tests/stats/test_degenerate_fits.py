"""Clustered OLS on degenerate data: when the regressor explains nothing within any problem
(its clustered variance is zero up to rounding), the fit gives a NaN interval and a note,
never numpy's "invalid value encountered in sqrt" warning or a p-value made of rounding."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf

from ablate.stats.depth import depth_association
from ablate.stats.trend import accuracy_trend, model_coefficient


@pytest.mark.parametrize("seed", [0, 1])  # rounding leaves variance +6e-19 and -7e-18
def test_an_outcome_that_never_changes_with_k_gets_a_note_not_a_warning(seed: int) -> None:
    # As a rank cut that leaves every answer as it was: each problem has the same 0/1
    # outcome at every k, so the slope is exactly 0 within every problem.
    rng = np.random.default_rng(seed)
    per_item = (rng.random((1, 100)) < 0.22).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = accuracy_trend({k: per_item for k in (1, 2, 4, 8)}, rng=rng, n_boot=50)
    assert result.slope_ols.estimate == pytest.approx(0.0, abs=1e-9)
    assert all(math.isnan(v) for v in result.slope_ols.interval)
    assert math.isnan(result.slope_ols.p)
    assert any(note.startswith("E1 model:") for note in result.notes)


def test_a_depth_fit_without_residuals_gets_a_note_not_a_rounding_p() -> None:
    # erank is exactly linear in depth and log n_tokens: zero residuals, zero variance
    # (statsmodels would give p = 0 from a variance of 1e-28).
    rng = np.random.default_rng(1)
    depth = rng.integers(1, 6, 40).astype(float)
    n_tokens = 20 + 5 * depth + rng.integers(0, 5, 40)
    erank = np.tile(1.0 + 0.3 * depth + 0.5 * np.log(n_tokens), (2, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = depth_association(erank, depth, n_tokens, rng=rng, n_boot=50,
                                   rank_statistics=False)
    ols = result.adjusted_slope_ols
    assert ols is not None and ols.estimate == pytest.approx(0.3, rel=1e-9)
    assert math.isnan(ols.p) and ols.note is not None


def test_a_regular_fit_keeps_the_statsmodels_interval_and_p() -> None:
    rng = np.random.default_rng(2)
    table = pd.DataFrame({"x": rng.normal(size=200), "g": np.repeat(np.arange(50), 4)})
    table["y"] = 0.5 * table["x"] + rng.normal(size=200)
    fit = smf.ols("y ~ x", table).fit(cov_type="cluster", cov_kwds={"groups": table["g"]},
                                      use_t=True)
    result = model_coefficient(fit, "x", level=0.9, method="ols", scale=-2.0)
    low, high = fit.conf_int(alpha=0.1).loc["x"]
    # A negative scale flips the interval; its ends stay ordered.
    assert result.interval == pytest.approx((-2 * high, -2 * low), rel=1e-12)
    assert result.estimate == pytest.approx(-2 * fit.params["x"], rel=1e-12)
    assert result.p == pytest.approx(fit.pvalues["x"], rel=1e-12) and result.note is None
