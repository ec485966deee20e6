"""How p-values are written (issue 11, item 1): a bootstrap p from B replicates can never go
below 2/(B+1), so at that floor it is a bound ("p < 2/B") with its caveat beside it; a
bootstrap p below 0.01 from fewer than 10,000 replicates is flagged; a model p below 0.001
is written "p < 0.001". Every expected value here is computed from B by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.questions.words import claim_blocks, p_value, p_words
from ablate.stats.claims import BOOTSTRAP_METHOD, apply_holm, interval_claim
from ablate.stats.intervals import paired_difference
from ablate.stats.pvalues import bootstrap_floor, resolve_p


def test_a_bootstrap_floor_is_detected_from_the_replicates_alone() -> None:
    # Every seed better on every item: no replicate crosses zero, so p_e1 = 2/(B+1).
    rng = np.random.default_rng(0)
    a = (rng.random((3, 40)) < 0.9).astype(float)
    result = paired_difference(a, a - 1.0, rng=rng, n_boot=500)
    assert result.p_e1 == pytest.approx(2 / 501)
    assert bootstrap_floor(500) == pytest.approx(2 / 501)
    floor = resolve_p(result.p_e1, n_boot=500)
    assert floor.kind == "floor" and floor.bound == pytest.approx(2 / 500)
    # One-sided: 1/(B+1), bound 1/B.
    one_sided = resolve_p(result.p_greater("e1"), n_boot=500, one_sided=True)
    assert one_sided.kind == "floor" and one_sided.bound == pytest.approx(1 / 500)


@pytest.mark.parametrize(("p", "n_boot", "cell", "statement"), [
    (2 / 2001, 2000, "< 0.001 ‡", "p < 0.001"),          # floor at B = 2000: bound 2/B
    (2 / 10_001, 10_000, "< 2.0e-04 ‡", "p < 2.0e-04"),  # floor at B = 10,000
    (0.004, 2000, "0.004 †", "p = 0.004"),              # below 0.01 from B < 10,000
    (0.004, 10_000, "0.004", "p = 0.004"),              # resolved by B = 10,000
    (0.0312, 2000, "0.031", "p = 0.031"),
    (3.0e-14, None, "< 0.001", "p < 0.001"),            # a model p far in its tail
    (0.25, None, "0.250", "p = 0.250"),
])
def test_cells_and_statements(p, n_boot, cell, statement) -> None:
    assert p_value(p, n_boot=n_boot) == cell
    assert p_words(p, n_boot=n_boot)[0] == statement


def test_a_holm_adjusted_p_of_a_floor_is_a_bound_too() -> None:
    # Three floors in one family: Holm multiplies the smallest by 3.
    raw = 2 / 2001
    assert p_value(3 * raw, n_boot=2000, raw=raw) == "< 0.003 ‡"
    assert p_words(3 * raw, n_boot=2000, raw=raw)[1].startswith(
        "no bootstrap replicate of B = 2000 crossed zero")


def test_prose_writes_a_floor_as_a_bound_with_its_caveat_beside_it() -> None:
    # The line of an E1 bootstrap p at its floor: "p < 0.001", never "p = 1.0e-03", and
    # the reason in the same parenthesis.
    rng = np.random.default_rng(1)
    a = (rng.random((3, 60)) < 0.9).astype(float)
    claim = interval_claim(paired_difference(100 * a, 100 * (a - 1.0), rng=rng, n_boot=2000),
                           claim="a differs from b", family="f", unit="pp")
    apply_holm([claim], alpha=0.05)
    record = claim.to_json()
    assert record["e1_method"] == BOOTSTRAP_METHOD and record["n_boot"] == 2000
    (_, lines) = claim_blocks(record, level=0.95, lead="Lead.")
    e1 = lines.items[0]
    assert "p < 0.001, Holm-adjusted p < 0.001" in e1
    assert "no bootstrap replicate of B = 2000 crossed zero" in e1
    assert "1.0e-03" not in e1 and "p = 0.001" not in e1
