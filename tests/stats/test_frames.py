"""Record tables to aligned arrays: seeds sorted, items aligned, mismatches are errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ablate.errors import AblateError
from ablate.stats.frames import (
    average_eval_seeds,
    check_aligned,
    item_covariates,
    pivot_condition,
    pivot_draws,
    pivot_erank,
    select,
)
from tests.stats.conftest import make_records


def test_pivot_aligns_items_and_sorts_seeds(records) -> None:
    shuffled = records.sample(frac=1.0, random_state=0)
    array = pivot_condition(shuffled, "correct", intervention="svd_rank_k", k=2)
    assert array.values.shape == (3, 40)
    assert array.seeds == (0, 1, 2)
    assert array.item_ids == tuple(sorted(array.item_ids))
    row = records[(records["intervention"] == "svd_rank_k") & (records["k"] == 2)
                  & (records["train_seed"] == 1) & (records["item_id"] == "item007")]
    assert array.values[1, 7] == float(row["correct"].iloc[0])


def test_none_selects_na_and_unknown_keys_are_named(records) -> None:
    unablated = select(records, k=None, draw=None)
    assert set(unablated["intervention"]) == {"none"}
    with pytest.raises(AblateError, match="Unknown selection key 'kk'"):
        select(records, kk=1)


def test_missing_items_for_one_seed_are_an_error(records) -> None:
    broken = records.drop(records[(records["train_seed"] == 2)
                                  & (records["item_id"] == "item003")].index)
    with pytest.raises(AblateError, match="items differ across seeds"):
        pivot_condition(broken, "correct", intervention="none")


def test_repeated_rows_are_an_error(records) -> None:
    with pytest.raises(AblateError, match="repeated rows"):
        pivot_condition(records, "correct", intervention="svd_rank_k")  # all ks at once


def test_draws_gather_to_seed_draw_item(records) -> None:
    draws = pivot_draws(records, "correct", intervention="random_rank_k", k=4)
    assert draws.values.shape == (3, 3, 40) and draws.draws == (0, 1, 2)
    fewer = records.drop(records[(records["intervention"] == "random_rank_k")
                                 & (records["train_seed"] == 0) & (records["draw"] == 2)].index)
    with pytest.raises(AblateError, match="different draws"):
        pivot_draws(fewer, "correct", intervention="random_rank_k", k=4)


def test_erank_lists_become_a_third_axis_and_covariates_follow_items(records) -> None:
    erank = pivot_erank(records, intervention="none")
    assert erank.values.shape == (3, 40, 5)  # T = 4 -> M(0)..M(4)
    covariates = item_covariates(records, erank.item_ids, intervention="none")
    assert np.isnan(covariates["depth_annotations"].iloc[0])  # item000 has unknown depth
    assert (covariates["n_tokens"] > 30).all()
    check_aligned(erank, erank, "itself")
    other = pivot_condition(make_records(n_seeds=2), "correct", intervention="none")
    with pytest.raises(AblateError, match="seeds"):
        check_aligned(erank, other, "two-seed run")


def _eval_seed_records() -> pd.DataFrame:
    """Two problems x two conditions (one unablated: k NA) x two eval seeds, one seed."""
    rows = []
    for eval_seed, correct in ((0, (1.0, 0.0, 1.0, 1.0)), (1, (1.0, 1.0, 0.0, 1.0))):
        for index, (condition, k, item) in enumerate(
                (("none", None, "a"), ("none", None, "b"), ("svd@k=1", 1, "a"),
                 ("svd@k=1", 1, "b"))):
            rows.append({"job_id": f"job-e{eval_seed}", "config_label": "m", "train_seed": 0,
                         "eval_seed": eval_seed, "condition": condition, "k": k,
                         "item_id": item, "n_target_tokens": 10 + index % 2,
                         "correct": correct[index], "tf_exact_match": bool(correct[index]),
                         "prediction": f"p{eval_seed}" if item == "a" else "same",
                         "erank_per_iter": [1.0 + eval_seed, 2.0 * (1 + eval_seed)]})
    frame = pd.DataFrame(rows)
    frame["k"] = frame["k"].astype("Int64")
    return frame


def test_average_eval_seeds_gives_each_problem_its_mean_over_eval_seeds():
    records = _eval_seed_records()
    averaged = average_eval_seeds(records)
    assert averaged.attrs["eval_seeds"] == [0, 1] and "eval_seed" not in averaged
    assert len(averaged) == 4  # one row per (condition, item); the NA k kept as a key
    by_key = averaged.set_index(["condition", "item_id"])
    # Hand-computed means of the 0/1 outcome over the two eval seeds.
    assert by_key["correct"].to_dict() == {("none", "a"): 1.0, ("none", "b"): 0.5,
                                          ("svd@k=1", "a"): 0.5, ("svd@k=1", "b"): 1.0}
    assert by_key["tf_exact_match"].to_dict() == by_key["correct"].to_dict()
    assert by_key.loc[("none", "a"), "erank_per_iter"] == [1.5, 3.0]  # elementwise
    assert averaged["k"].isna().sum() == 2 and str(averaged["k"].dtype) == "Int64"
    # Equal across eval seeds: kept with its dtype; differing text becomes missing.
    assert averaged["n_target_tokens"].dtype == records["n_target_tokens"].dtype
    assert by_key.loc[("none", "b"), "prediction"] == "same"
    assert pd.isna(by_key.loc[("none", "a"), "prediction"])
    assert averaged["job_id"].isna().all()


def test_average_eval_seeds_leaves_one_eval_seed_alone():
    records = _eval_seed_records()
    one = records[records["eval_seed"] == 1]
    assert average_eval_seeds(one) is one
