"""Q5 on matrix-CODI study records: the latent erank profile, its length-adjusted depth
slope with unknown depth excluded and counted, and L_n minus L_0, each recovering the truth
of make_codi_records; checked against numpy where the estimate has a closed form."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from ablate.questions import analyze_records
from ablate.questions.latents import base_label
from ablate.stats.frames import select
from tests.stats.conftest import (
    ACCURACY,
    LATENT_DEPTH_EFFECT,
    LATENT_SLOPE,
    UNKNOWN_DEPTH_ITEMS,
    make_codi_records,
    make_records,
)

N_BOOT = 200


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    return make_codi_records()


@pytest.fixture(scope="module")
def analysis(records: pd.DataFrame) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no statsmodels or numpy warning on CODI records
        return analyze_records(records, rng=np.random.default_rng(0), n_boot=N_BOOT)


def _claim(entry: dict, aspect: str, role: str = "primary") -> dict:
    return next(c for c in entry["claims"] if c["aspect"] == aspect and c["role"] == role)


def _covers(claim: dict, truth: float, key: str = "e3") -> bool:
    low, high = claim[key]
    return low <= truth <= high


def _latent_erank(records: pd.DataFrame) -> np.ndarray:
    """(n_seeds, n_items, n_latents) straight from the L6 rows, sorted by seed and item."""
    rows = records[records["n_latents"] == 6].sort_values(["train_seed", "item_id"])
    n_seeds = rows["train_seed"].nunique()
    return np.stack(rows["latent_erank"].map(np.asarray).to_list()).reshape(n_seeds, -1, 6)


def test_only_groups_with_latents_get_a_q5_entry(analysis: dict) -> None:
    (entry,) = analysis["q5"]  # L0 has empty latent_erank lists: no profile to test
    assert entry["config_label"] == "codi-L6" and entry["n_latents"] == 6
    assert entry["latents"] == [1, 2, 3, 4, 5, 6] and entry["n_seeds"] == 3


def test_profile_is_the_mean_erank_of_each_latent(analysis: dict, records: pd.DataFrame) -> None:
    values = _latent_erank(records)
    entry = analysis["q5"][0]
    assert entry["mean_profile"] == pytest.approx(values.mean(axis=(0, 1)).tolist(), rel=1e-8)
    assert np.array(entry["per_seed_profile"]) == pytest.approx(values.mean(axis=1), rel=1e-8)


def test_slope_per_latent_step_recovers_the_truth(analysis: dict, records: pd.DataFrame) -> None:
    entry = analysis["q5"][0]
    slope = _claim(entry, "profile")
    # Each seed's slope is the least-squares slope of its mean profile over steps 1..6.
    per_seed = [np.polyfit(np.arange(6), profile, 1)[0]
                for profile in _latent_erank(records).mean(axis=1)]
    assert slope["per_seed"] == pytest.approx(per_seed, rel=1e-8)
    assert _covers(slope, LATENT_SLOPE) and slope["e3"][1] < 0
    assert slope["family"] == "q5|codi-L6|gsm8k|generative|T=1"
    assert slope["verdict"] == "across_seeds"
    change = _claim(entry, "profile", "secondary")
    # The secondary claim is tested in the family of the primary one.
    assert _covers(change, 5 * LATENT_SLOPE) and change["family"] == slope["family"]


def test_depth_slope_is_adjusted_for_length_and_excludes_unknown_depth(
        analysis: dict, records: pd.DataFrame) -> None:
    entry = analysis["q5"][0]
    depth = entry["depth"]
    n_items = records["item_id"].nunique()
    assert depth["n_excluded_unknown_depth"] == len(UNKNOWN_DEPTH_ITEMS)
    assert depth["n_items"] == n_items - len(UNKNOWN_DEPTH_ITEMS)
    assert any("unknown depth excluded" in note for note in entry["notes"])
    claim = _claim(entry, "depth")
    assert claim["family"] == "q5-depth|codi-L6|gsm8k|generative|T=1"
    assert _covers(claim, LATENT_DEPTH_EFFECT) and claim["e3"][0] > 0
    assert _covers(claim, LATENT_DEPTH_EFFECT, "e1")  # E1: the clustered OLS
    # Independent check: per-seed least squares of the mean latent erank on
    # [1, depth, log n_tokens] over the problems of known depth, averaged over seeds.
    rows = records[records["n_latents"] == 6].sort_values(["train_seed", "item_id"])
    first = rows[rows["train_seed"] == 0]
    known = first["depth_annotations"].notna().to_numpy()
    design = np.column_stack([np.ones(known.sum()),
                              first["depth_annotations"].to_numpy(dtype=float)[known],
                              np.log(first["n_prompt_tokens"] + first["n_target_tokens"])
                              .to_numpy()[known]])
    mean_erank = _latent_erank(records).mean(axis=2)[:, known]
    expected = np.mean([np.linalg.lstsq(design, y, rcond=None)[0][1] for y in mean_erank])
    assert claim["estimate"] == pytest.approx(expected, rel=1e-8)
    # Without the length term the slope absorbs the length effect: adjustment matters here.
    naive = np.mean([np.polyfit(design[:, 1], y, 1)[0] for y in mean_erank])
    assert naive > claim["e3"][1]
    assert depth["kendall_tau_b"]["estimate"] > 0
    lines = _claim(entry, "depth", "secondary")
    assert lines["family"].startswith("q5-depth-lines|")


def test_per_latent_depth_scan_is_exploratory_and_bh_adjusted(analysis: dict) -> None:
    scan = analysis["q5"][0]["depth"]["per_latent"]
    assert scan["label"] == "exploratory" and scan["latents"] == [1, 2, 3, 4, 5, 6]
    assert scan["p_method"] == "p_e3"
    p, p_bh = np.array(scan["p"]), np.array(scan["p_bh"])
    assert np.all(p_bh >= p - 1e-12)
    # Depth acts on every latent alike: each latent's slope is near the truth.
    assert np.allclose(scan["estimate"], LATENT_DEPTH_EFFECT, atol=0.05)


def test_l6_minus_l0_is_paired_per_seed_and_item(analysis: dict, records: pd.DataFrame) -> None:
    entries = {e["outcome"]: e for e in analysis["q5_latents"]}
    assert set(entries) == {"correct", "answer_loglik"}
    accuracy = entries["correct"]
    assert accuracy["config_label"] == "codi" and accuracy["n_latents"] == [0, 6]
    (claim,) = accuracy["claims"]
    assert claim["n_latents"] == 6 and claim["unit"] == "pp"
    assert claim["family"] == "q5-latents|codi|gsm8k|generative|T=1|correct"
    means = records.groupby("n_latents")["correct"].mean()
    assert claim["estimate"] == pytest.approx(100 * (means[6] - means[0]), rel=1e-9)
    truth = 100 * (ACCURACY[6] - ACCURACY[0])
    assert _covers(claim, truth) and claim["e3"][0] > 0
    assert [m["n_latents"] for m in accuracy["means"]] == [0, 6]
    (loglik,) = entries["answer_loglik"]["claims"]
    assert _covers(loglik, 2.0) and loglik["unit"] == "nats"


def test_every_q5_claim_goes_through_holm(analysis: dict) -> None:
    claims = [c for family in ("q5", "q5_latents") for e in analysis[family]
              for c in e["claims"]]
    assert len(claims) == 4 + 2
    assert all(c["verdict"] is not None and c["p_holm_e1"] is not None for c in claims)


def test_a_run_without_l0_has_no_latent_count_contrast(records: pd.DataFrame) -> None:
    only_l6 = records[records["n_latents"] == 6]
    analysis = analyze_records(only_l6, rng=np.random.default_rng(1), n_boot=N_BOOT)
    assert analysis["q5_latents"] == [] and len(analysis["q5"]) == 1


def test_one_latent_gives_depth_but_no_profile_slope() -> None:
    records = make_codi_records(n_seeds=2, n_items=30, latent_counts=(1,))
    analysis = analyze_records(records, rng=np.random.default_rng(2), n_boot=N_BOOT)
    (entry,) = analysis["q5"]
    assert {c["aspect"] for c in entry["claims"]} == {"depth"}
    assert any("needs >= 2 latents" in note for note in entry["notes"])


def test_one_seed_is_described_not_inferred() -> None:
    records = make_codi_records(n_seeds=1, n_items=30)
    analysis = analyze_records(records, rng=np.random.default_rng(3), n_boot=N_BOOT)
    slope = _claim(analysis["q5"][0], "profile")
    assert slope["e3"] == [None, None] and slope["verdict"].startswith("one_seed")
    assert analysis["q5"][0]["depth"]["per_latent"]["p_method"] == "p_e1"


def test_records_without_latents_have_no_q5() -> None:
    analysis = analyze_records(make_records(n_items=15, n_draws=2), rng=np.random.default_rng(4),
                               n_boot=N_BOOT)
    assert analysis["q5"] == [] and analysis["q5_latents"] == []


def test_select_by_number_of_latents_and_latent_index(records: pd.DataFrame) -> None:
    six = select(records, n_latents=6)
    assert len(six) == 3 * 60 and set(six["config_label"]) == {"codi-L6"}
    assert len(select(records, n_latents=6, latent_index=None)) == len(six)
    assert select(records, latent_index=2).empty


def test_base_label_drops_only_the_latent_suffix() -> None:
    assert base_label("codi-gpt2-L6") == "codi-gpt2"
    assert base_label("codi-L0") == "codi"
    assert base_label("multiprobe") == "multiprobe"
