"""Record tables to aligned arrays: seeds sorted, items aligned, mismatches are errors."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.errors import AblateError
from ablate.stats.frames import (
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
