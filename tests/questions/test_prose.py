"""Prose that says exactly what the numbers support (issue 11, items 4 and 5): a point
estimate of 0 is not "does not change"; a summary never calls a difference that holds
across seeds "equivalent"; the one-seed TOST verdict uses the configured alpha; a verdict
never names an interval that was not computed; Page's test is labelled E1 and stays out of
the summary lines."""

from __future__ import annotations

import numpy as np

from ablate.questions.control import CONTROL, equivalence_text
from ablate.questions.trend import TREND, entry_blocks
from ablate.questions.words import change_text, verdict_text
from ablate.stats.claims import Claim, apply_holm


def test_a_zero_estimate_is_described_not_claimed_as_no_change() -> None:
    assert "does not change" not in change_text(0.0, "pp")
    assert change_text(0.0, "pp") == "shows no net change in these data (estimate 0)"
    assert change_text(-2.5, "pp") == "falls by 2.50 pp (estimate -2.50)"


def q2_entry(claim: dict) -> dict:
    return {"config_label": "multiprobe", "task": "gsm8k", "mode": "teacher_forced",
            "n_iterations": 8, "site": "head_input", "intervention": "svd_rank_k",
            "control": "random_rank_k", "outcome": "correct", "unit": "pp", "n_draws": 3,
            "margin": 2.0, "claims": [claim]}


def test_the_q2_summary_never_calls_a_real_difference_equivalent() -> None:
    # Inside the margin and different from 0 across seeds: both are true, and the summary
    # leads with the difference.
    claim = {"k": 4, "estimate": 1.2, "e3": [0.4, 1.9], "e1": [0.6, 1.8], "unit": "pp",
             "verdict": "across_seeds", "equivalent_e3": True, "p_tost_e3": 0.01}
    (line,) = CONTROL.summary({"q2": [q2_entry(claim)]})
    assert "equivalent to random within the margin" not in line
    assert "differs across seeds, by less than the margin" in line


def test_the_one_seed_tost_verdict_uses_the_configured_alpha() -> None:
    # TOST E1 p = 0.07 rejects at alpha 0.1 (decided by the analysis: equivalent_e1).
    claim = {"k": 4, "estimate": 0.1, "unit": "pp", "verdict": "one_seed_not_significant",
             "equivalent_e3": None, "p_tost_e1": 0.07, "equivalent_e1": True,
             "n_boot": 2000}
    assert "the difference is equivalent within" in equivalence_text(claim, 2.0)
    assert "not shown equivalent" in equivalence_text({**claim, "equivalent_e1": False}, 2.0)


def test_a_verdict_names_only_the_intervals_that_were_computed() -> None:
    # Two seeds, but no E3 (e.g. Satterthwaite df undefined): not "(E1 and E3)".
    claim = Claim(claim="x", family="f", role="primary", unit="pp", estimate=1.0,
                  e1=[-1.0, 3.0], p_e1=0.4, e1_method="model", e1_bootstrap=None,
                  p_e1_bootstrap=None, e3=[np.nan, np.nan], p_e3=None, df_e3=None,
                  se_e3=None, per_seed=[0.5, 1.5], n_seeds=2, n_items=30)
    apply_holm([claim], alpha=0.05)
    assert claim.verdict == "not_significant_e3_not_computed"
    assert "E1 and E3" not in verdict_text(claim.verdict)


def q1_entry() -> dict:
    slope = {"claim": "correct changes when k is halved", "role": "primary",
             "unit": "pp per halving of k", "estimate": -4.4, "e1": [-6.6, -2.2], "p_e1": 1e-4,
             "e1_method": "OLS", "e3": [-6.9, -1.9], "p_e3": 0.001, "df_e3": 26.0,
             "per_seed": [-5.6, -3.6, -4.1], "p_holm_e1": 2e-4, "p_holm_e3": 0.002,
             "verdict": "across_seeds", "n_boot": 2000}
    return {"config_label": "multiprobe", "task": "gsm8k", "mode": "teacher_forced",
            "n_iterations": 8, "site": "head_input", "intervention": "svd_rank_k",
            "outcome": "correct", "unit": "pp", "n_seeds": 3, "seeds": [0, 1, 2],
            "n_items": 100, "ks": [1, 2, 4], "claims": [slope],
            "page": {"statistic": 89.0, "p": 7.2e-4, "method": "exact", "claim": "E1"},
            "odds_ratio_per_doubling": None, "adjacent": [], "monotone": {}, "notes": []}


def test_page_is_labelled_e1_where_it_appears_and_kept_out_of_the_summary() -> None:
    texts = [block.text for block in entry_blocks(q1_entry(), 0.95) if hasattr(block, "text")]
    (page,) = [text for text in texts if "Page" in text]
    assert page.startswith("Page's trend test (E1)")
    assert "nothing about a new training run" in page
    assert not any("Page" in line for line in TREND.summary({"q1": [q1_entry()]}))
