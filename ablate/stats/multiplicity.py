"""Multiple-testing adjustments: Holm within a pre-registered family, Benjamini-Hochberg for
exploratory scans (over iterations, layers or sites), both NaN-preserving.

    >>> holm([0.01, 0.04, 0.03]).tolist()
    [0.03, 0.06, 0.06]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _finite(p_values: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p_values, dtype=np.float64)
    # NaN p-values (e.g. one seed: no E3 test) are not tests and do not enlarge the family.
    return p, np.isfinite(p)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error), shape of ``p_values``."""
    p, finite = _finite(p_values)
    adjusted = np.full(p.shape, np.nan)
    tests = p[finite]
    order = np.argsort(tests, kind="stable")
    m = tests.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * tests[order])
    result = np.empty(m)
    result[order] = np.minimum(stepped, 1.0)
    adjusted[finite] = result
    return adjusted


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), for exploratory scans."""
    p, finite = _finite(p_values)
    adjusted = np.full(p.shape, np.nan)
    tests = p[finite]
    order = np.argsort(tests, kind="stable")
    m = tests.size
    scaled = tests[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(stepped, 1.0)
    adjusted[finite] = result
    return adjusted
