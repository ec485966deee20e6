"""Rows are analysed by the role their kind registers: a kind without k, a control without
draws, variants of a kind (norm_matched) as arms of their own, and rows no registered kind
explains (composed conditions) left out with the rest unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ablate.interventions import (
    control_of,
    register_intervention,
    unregister_intervention,
)
from ablate.plots import LevelPanel, plot_levels
from ablate.questions import analyze_records
from tests.stats.conftest import make_records

N_BOOT = 40


@pytest.fixture
def kless():
    """"zeroed" (an ablation without settings) and "kept" (its control, no draws)."""
    register_intervention("zeroed", "replace every matrix by zeros", ())(
        lambda intervention, X, eval_seed, basis: X * 0)
    register_intervention("kept", "leave the matrices alone (a control)", (),
                          role=control_of("zeroed", matched_on=()), short="kept")(
        lambda intervention, X, eval_seed, basis: X)
    yield
    unregister_intervention("kept")
    unregister_intervention("zeroed")


def _copy(records: pd.DataFrame, intervention: str, label: str, shift: float) -> pd.DataFrame:
    rows = records[records["intervention"] == "none"].copy()
    rows["intervention"], rows["condition"], rows["site"] = intervention, label, "head_input"
    rows["correct"] = (rows["correct"] + shift).clip(0, 1)
    rows["erank_per_iter"] = None
    return rows


def test_a_kind_without_k_and_a_control_without_draws_are_analysed(kless) -> None:
    base = make_records(n_items=20, n_draws=2, ks=(1, 2))
    records = pd.concat([base, _copy(base, "zeroed", "zeroed@head_input", -1.0),
                         _copy(base, "kept", "kept@head_input", 0.0)], ignore_index=True)
    analysis = analyze_records(records, rng=np.random.default_rng(0), n_boot=N_BOOT)
    (levels,) = [e for e in analysis["levels"] if e["outcome"] == "correct"]
    rows = {(r["condition"], r["role"], r["k"]): r for r in levels["rows"]}
    assert ("zeroed", "ablation", None) in rows and ("kept", "control", None) in rows
    assert rows[("zeroed", "ablation", None)]["estimate"] == 0.0  # every answer made wrong
    assert {e["intervention"] for e in analysis["q1"]} == {"svd_rank_k"}  # no k: no trend
    (contrast,) = [e for e in analysis["q2"] if e["control"] == "kept"
                   and e["outcome"] == "correct"]
    (claim,) = contrast["claims"]
    unablated = rows[("none", "unablated", None)]["estimate"]
    assert claim["k"] is None and claim["estimate"] == pytest.approx(-unablated)
    assert claim["claim"] == "zeroed correct differs from kept" and contrast["n_draws"] == 1
    # The level figure draws both as points right of the k axis, named by the registry.
    fig, axes = plot_levels([[LevelPanel(levels, names={"zeroed": ("zeroed", "zeroed"),
                                                        "kept": ("kept", "kept")})]])
    labels = [tick.get_text() for tick in axes[0, 0].get_xticklabels()]
    assert labels == ["1", "2", "zeroed", "kept", "none"]


def test_variants_are_arms_and_composed_rows_are_left_out() -> None:
    base = make_records(n_items=20, n_draws=2, ks=(1, 2))
    plain = analyze_records(base, rng=np.random.default_rng(1), n_boot=N_BOOT)
    svd = base[base["intervention"] == "svd_rank_k"]
    matched = svd.assign(intervention="svd_rank_k:norm_matched",
                         condition=svd["condition"] + ":norm_matched")
    composed = svd.assign(intervention="svd_rank_k+random_rank_k",
                          condition=svd["condition"] + "+x")
    with_matched = analyze_records(pd.concat([base, matched], ignore_index=True),
                                   rng=np.random.default_rng(1), n_boot=N_BOOT)
    arms = {(e["intervention"], e["outcome"]) for e in with_matched["q1"]}
    assert ("svd_rank_k:norm_matched", "correct") in arms and ("svd_rank_k", "correct") in arms
    # random_rank_k (norm_matched false) controls only the plain arm.
    assert {e["intervention"] for e in with_matched["q2"]} == {"svd_rank_k"}
    with_composed = analyze_records(pd.concat([base, composed], ignore_index=True),
                                    rng=np.random.default_rng(1), n_boot=N_BOOT)
    (note,) = with_composed.pop("notes")
    assert note.startswith("rows of svd_rank_k+random_rank_k are not analysed")
    plain.pop("notes")
    assert with_composed == plain
