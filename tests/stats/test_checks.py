"""Checks are not tests (issue 11, item 2): a contrast whose conditions are the same
function (a rank cut with k >= d keeps the states) is an identity check, passed when its
difference is zero up to rounding; a contrast zero up to rounding in every item has nothing
to test. Neither gets a Holm p or enters a family, so the other tests of the family keep
their power; an identity whose difference is real fails. Holm values are checked against
statsmodels' own Holm."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from ablate.questions import analyze_records
from ablate.stats.claims import Claim, apply_holm
from tests.stats.conftest import make_records

N_BOOT = 200
D = 4  # the matrix size the records' checkpoints would have: k = 4 keeps the states


def claim(p: float, *, estimate: float = 1.0, per_seed: tuple[float, ...] = (0.5, 1.0, 1.5),
          identity: str | None = None, se: float = 0.3) -> Claim:
    return Claim(claim="x", family="q", role="primary", unit="pp", estimate=estimate,
                 e1=[estimate - 0.5, estimate + 0.5], p_e1=p, e1_method="model",
                 e1_bootstrap=[estimate - 0.5, estimate + 0.5], p_e1_bootstrap=p,
                 e3=[estimate - 1, estimate + 1], p_e3=p, df_e3=4.0, se_e3=se,
                 per_seed=list(per_seed), n_seeds=len(per_seed), n_items=50, identity=identity)


def holm(p_values: list[float]) -> list[float]:
    return multipletests(p_values, method="holm")[1].tolist()


def test_an_identity_leaves_its_family_and_the_tests_keep_their_power() -> None:
    tests = [claim(0.02), claim(0.03)]
    noise = claim(0.58, estimate=3.0e-16, per_seed=(0.0, 9.1e-16, 0.0), se=1.2e-16,
                  identity="k=8 >= d=8")
    noise.e1 = noise.e1_bootstrap = [0.0, 1.85e-16]
    apply_holm([*tests, noise], alpha=0.05)
    assert noise.verdict == "identity_check_passed" and noise.p_holm_e3 is None
    assert noise.check == {"kind": "identity", "reason": "k=8 >= d=8", "passed": True,
                           "largest_deviation": pytest.approx(9.1e-16), "tolerance": 1e-9}
    # Holm over the two tests only (with the identity counted it would be 3 x 0.02).
    assert [c.p_holm_e3 for c in tests] == pytest.approx(holm([0.02, 0.03]))
    assert [c.verdict for c in tests] == ["across_seeds", "across_seeds"]


def test_an_identity_with_a_real_difference_fails_and_a_rounding_zero_is_a_check() -> None:
    failed = claim(0.01, estimate=2.0, identity="k=8 >= d=8")
    zero = claim(1.0, estimate=0.0, per_seed=(0.0, 0.0, 0.0), se=math.nan)
    zero.e1 = zero.e1_bootstrap = [0.0, 0.0]
    apply_holm([failed, zero], alpha=0.05)
    assert failed.verdict == "identity_check_failed" and failed.check["passed"] is False
    assert zero.verdict == "zero_up_to_rounding" and zero.check["kind"] == "rounding"
    assert failed.p_holm_e1 is None and zero.p_holm_e1 is None


def identity_records() -> pd.DataFrame:
    """make_records whose rank cuts at k = D return the unablated outcome for every item,
    as an exact identity does; three random draws make the mean over draws differ from it
    by rounding (as in real runs)."""
    records = make_records(n_items=30, ks=(1, 2, D), n_draws=3)
    plain = records[records["intervention"] == "none"].set_index(["train_seed", "item_id"])
    at_d = (records["k"] == D).fillna(False).to_numpy()
    keys = pd.MultiIndex.from_frame(records.loc[at_d, ["train_seed", "item_id"]])
    for column in ("correct", "answer_loglik", "solution_nats"):
        records.loc[at_d, column] = plain.loc[keys, column].to_numpy()
    records["answer_loglik"] = records["answer_loglik"] + 0.1  # values with rounding
    return records


def test_rank_cuts_at_k_equal_d_are_identity_checks_outside_every_family() -> None:
    analysis = analyze_records(identity_records(), rng=np.random.default_rng(0),
                               n_boot=N_BOOT, tost_margin=2.0, dims={"multiprobe": D})
    assert analysis["settings"]["dims"] == {"multiprobe": D}
    for entry in analysis["q1"]:
        slope, unablated = entry["claims"]
        assert unablated["verdict"] == "identity_check_passed"
        assert unablated["identity"] == f"k={D} >= d={D}"
        assert unablated["p_holm_e1"] is None and unablated["p_holm_e3"] is None
        # The slope is alone in its family now: Holm leaves its p as it is.
        assert slope["p_holm_e3"] == pytest.approx(slope["p_e3"])
    for entry in analysis["q2"]:
        by_k = {c["k"]: c for c in entry["claims"]}
        assert by_k[D]["verdict"] == "identity_check_passed"
        tests = [by_k[1], by_k[2]]
        assert [c["p_holm_e3"] for c in tests] == pytest.approx(
            holm([c["p_e3"] for c in tests]))
    # Variance components of a check are rounding noise: none is kept.
    quantities = [c["quantity"] for c in analysis["power"]["variance_components"]]
    assert quantities and not any(f"k={D}" in q for q in quantities)


def test_without_d_the_same_contrasts_are_rounding_zeros_not_tests() -> None:
    analysis = analyze_records(identity_records(), rng=np.random.default_rng(0),
                               n_boot=N_BOOT)
    verdicts = {c["verdict"] for e in analysis["q2"] for c in e["claims"] if c["k"] == D}
    assert verdicts == {"zero_up_to_rounding"}


def test_k_equal_d_with_different_outcomes_fails_its_identity_check() -> None:
    # make_records draws new outcomes at every k: at k = d that is a broken identity.
    analysis = analyze_records(make_records(n_items=30, ks=(1, 2, D)),
                               rng=np.random.default_rng(0), n_boot=N_BOOT,
                               dims={"multiprobe": D})
    correct = next(e for e in analysis["q1"] if e["outcome"] == "correct")
    assert correct["claims"][1]["verdict"] == "identity_check_failed"
