"""analyze_records: every family on a tiny run, JSON-stable output, one-seed behaviour."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from ablate.errors import AblateError
from ablate.questions import analyze_records, tables_from_analysis
from ablate.stats.claims import VERDICTS
from ablate.stats.multiplicity import holm
from tests.stats.conftest import make_records

N_BOOT = 60


@pytest.fixture(scope="module")
def two_heads() -> pd.DataFrame:
    # Same checkpoints, heads swapped at evaluation: erank falls with "collapse".
    first = make_records(n_items=30, n_draws=2, seed=0)
    second = make_records(n_items=30, n_draws=2, seed=1, config_label="collapse",
                          erank_slope=-0.2)
    return pd.concat([first, second], ignore_index=True)


@pytest.fixture(scope="module")
def analysis(two_heads: pd.DataFrame) -> dict:
    return analyze_records(two_heads, rng=np.random.default_rng(0), n_boot=N_BOOT,
                           tost_margin=5.0)


def test_output_is_strict_json_and_byte_stable(two_heads: pd.DataFrame, analysis: dict) -> None:
    text = json.dumps(analysis, allow_nan=False, sort_keys=True)
    again = analyze_records(two_heads, rng=np.random.default_rng(0), n_boot=N_BOOT,
                            tost_margin=5.0)
    assert json.dumps(again, allow_nan=False, sort_keys=True) == text


def test_every_family_runs_where_its_data_exist(analysis: dict) -> None:
    assert {(e["config_label"], e["outcome"]) for e in analysis["q1"]} == {
        (head, outcome) for head in ("collapse", "multiprobe")
        for outcome in ("correct", "answer_loglik")}
    assert {e["outcome"] for e in analysis["q2"]} == {"correct", "answer_loglik",
                                                      "bits_per_byte"}
    assert [len(e["claims"]) for e in analysis["q2"]] == [3] * len(analysis["q2"])
    assert {e["config_label"] for e in analysis["q3"]} == {"collapse", "multiprobe"}
    assert [e["n_excluded_unknown_depth"] for e in analysis["q4"]] == [1, 1]
    heads = analysis["q3_heads"]
    assert len(heads) == 1 and heads[0]["design"] == "paired"
    assert heads[0]["direction_flip"]["flips"] is True
    assert analysis["power"]["mde_table"][1]["n_seeds"] == 3
    assert analysis["power"]["mde_table"][1]["mde_in_seed_sd"] == pytest.approx(3.26, abs=0.005)


def test_claims_carry_intervals_holm_and_a_verdict(analysis: dict) -> None:
    entry = next(e for e in analysis["q1"] if e["config_label"] == "multiprobe"
                 and e["outcome"] == "correct")
    trend, contrast = entry["claims"]
    for claim in (trend, contrast):
        assert claim["verdict"] in VERDICTS
        assert claim["e3"][0] <= claim["estimate"] <= claim["e3"][1]
        assert claim["n_seeds"] == 3 and len(claim["per_seed"]) == 3
    assert trend["e1_method"].startswith("OLS")
    expected = holm([trend["p_e3"], contrast["p_e3"]])
    assert [trend["p_holm_e3"], contrast["p_holm_e3"]] == pytest.approx(expected.tolist(),
                                                                        rel=1e-8)
    assert entry["monotone"]["rule"].startswith("intersection-union")
    accuracy_q2 = next(e for e in analysis["q2"] if e["outcome"] == "correct")
    assert accuracy_q2["margin"] == 5.0
    assert all(c["p_tost_e3"] is not None for c in accuracy_q2["claims"])


def test_one_seed_describes_and_does_not_infer() -> None:
    records = make_records(n_seeds=1, n_items=25, n_draws=2)
    analysis = analyze_records(records, rng=np.random.default_rng(1), n_boot=N_BOOT)
    claims = [c for family in ("q1", "q2", "q3", "q4") for e in analysis[family]
              for c in e["claims"]]
    assert claims
    for claim in claims:
        assert claim["e3"] == [None, None] and claim["p_holm_e3"] is None
        assert claim["verdict"].startswith("one_seed")
        assert any("one seed" in note for note in claim["notes"])
    assert any("one seed" in note for e in analysis["q1"] for note in e["notes"])


def test_separate_checkpoints_compare_heads_by_checkpoint_with_a_warning() -> None:
    records = pd.concat([make_records(n_items=20, n_draws=2, ks=(1, 2)),
                         make_records(n_items=20, n_draws=2, ks=(1, 2), config_label="collapse",
                                      checkpoint_prefix="other", erank_slope=-0.1)],
                        ignore_index=True)
    analysis = analyze_records(records, rng=np.random.default_rng(2), n_boot=N_BOOT)
    heads = analysis["q3_heads"][0]
    assert heads["design"] == "unpaired"
    assert heads["welch"]["permutation_method"] == "not run"
    assert any("checkpoints" in note for note in heads["notes"])


def test_heads_on_the_same_checkpoints_pair_on_the_seeds_both_ran() -> None:
    # Seed 2 ran under one head only: the comparison stays paired on seeds 0 and 1.
    a = make_records(n_items=20, n_draws=2, ks=(1, 2))
    b = make_records(n_items=20, n_draws=2, ks=(1, 2), config_label="collapse",
                     erank_slope=-0.1)
    records = pd.concat([a, b[b["train_seed"] < 2]], ignore_index=True)
    heads = analyze_records(records, rng=np.random.default_rng(3), n_boot=N_BOOT)["q3_heads"][0]
    assert heads["design"] == "paired"
    assert heads["claims"][0]["n_seeds"] == 2
    assert any("[2]" in note and "left out" in note for note in heads["notes"])


def test_tables_are_tidy_and_cover_every_claim(analysis: dict) -> None:
    tables = tables_from_analysis(analysis)
    assert len(tables["q1"]) == sum(len(e["claims"]) for e in analysis["q1"])
    assert {"e1_low", "e1_high", "e3_low", "e3_high", "p_holm_e3", "site"} <= set(tables["q1"])
    assert len(tables["q1_adjacent"]) == 2 * len(analysis["q1"])
    assert set(tables["per_seed"]["seed"]) == {0, 1, 2}
    assert len(tables["power_mde"]) == 9 and not tables["variance_components"].empty


def test_records_without_the_schema_are_user_errors() -> None:
    with pytest.raises(AblateError, match="lack column"):
        analyze_records(pd.DataFrame({"task": ["gsm8k"]}), rng=np.random.default_rng(0))


def test_constant_accuracy_is_described_without_errors_or_warnings() -> None:
    # A tiny model at 0% everywhere: zero variance is reported, not crashed on, and a
    # contrast with no difference in any item is a check, not a test (no Holm p).
    records = make_records(n_items=15, n_draws=2, ks=(1, 2, 4))
    records["correct"] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analysis = analyze_records(records, rng=np.random.default_rng(3), n_boot=N_BOOT)
    entry = next(e for e in analysis["q1"] if e["outcome"] == "correct")
    slope = entry["claims"][0]
    assert slope["estimate"] == 0.0 and slope["e3"] == [None, None]
    assert slope["verdict"] == "zero_up_to_rounding" and slope["p_holm_e1"] is None
    assert slope["check"]["kind"] == "rounding" and slope["check"]["passed"] is True
    assert any("zero variance" in note for note in slope["notes"])
    assert entry["odds_ratio_per_doubling"]["note"] == "outcome is constant: no odds ratio"


def test_several_sites_get_an_exploratory_bh_scan() -> None:
    records = make_records(n_items=15, n_draws=2, ks=(1, 2, 4))
    ablated = records[records["intervention"] != "none"].copy()
    ablated["site"] = "iter.2"
    records = pd.concat([records, ablated], ignore_index=True)
    analysis = analyze_records(records, rng=np.random.default_rng(4), n_boot=N_BOOT)
    (scan,) = analysis["scans"]
    assert scan["sites"] == ["head_input", "iter.2"] and scan["label"] == "exploratory"
    p = np.array(scan["p_e3"], dtype=float)
    expected = np.minimum(1, np.minimum.accumulate((p[np.argsort(p)] * 2 / [1, 2])[::-1])[::-1])
    assert sorted(scan["p_bh"]) == pytest.approx(sorted(expected.tolist()))
    assert len(tables_from_analysis(analysis)["scans"]) == 2


def test_the_q3_change_is_tested_in_the_q3_family(analysis: dict) -> None:
    # Protocol: one Q3 family per setting holds every head's tests (slope and iteration T
    # minus 1) and the head interaction; no claim escapes into a family of its own.
    q3 = [c for e in analysis["q3"] for c in e["claims"]]
    heads = [c for e in analysis["q3_heads"] for c in e["claims"]]
    members = q3 + heads
    assert len(q3) == 4 and {c["role"] for c in q3} == {"primary", "secondary"}
    assert {c["family"] for c in members} == {"q3|gsm8k|teacher_forced|T=4"}
    for key in ("e1", "e3"):
        expected = multipletests([c[f"p_{key}"] for c in members], method="holm")[1]
        assert [c[f"p_holm_{key}"] for c in members] == pytest.approx(expected.tolist(),
                                                                      rel=1e-8)


def test_page_is_labelled_as_the_e1_statement_it_is(analysis: dict) -> None:
    # Under an across-seed null Page rejects ~14% of the time: it speaks for these
    # checkpoints only, and the analysis says so.
    pages = [e["page"] for e in analysis["q1"]]
    assert pages and all(page["claim"] == "E1" for page in pages)


def test_one_seed_equivalence_is_decided_at_the_configured_alpha() -> None:
    # One TOST E1 p lies between the two alphas (0.33): the decisions must differ.
    records = make_records(n_seeds=1, n_items=25, n_draws=2)
    decisions = []
    for alpha in (0.01, 0.5):
        analysis = analyze_records(records, rng=np.random.default_rng(1), n_boot=N_BOOT,
                                   tost_margin=10.0, alpha=alpha)
        claims = [c for e in analysis["q2"] if e["outcome"] == "correct" for c in e["claims"]]
        assert claims and all(c["equivalent_e1"] == (c["p_tost_e1"] < alpha) for c in claims)
        decisions.append([c["equivalent_e1"] for c in claims])
    assert decisions[0] != decisions[1]
