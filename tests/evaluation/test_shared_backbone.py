"""One shared backbone pass gives the same records as running each condition through its
own hooked pass: identical for the unablated condition, within float tolerance otherwise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ablate.evaluation import evaluate
from ablate.evaluation.shared_backbone import split_conditions
from ablate.interventions import expand_conditions
from tests.conftest import tiny_model

SPEC = [
    {"name": "svd_rank_k", "k": [1, 2, 4]},
    {"name": "svd_rank_k", "k": 2, "norm_matched": True},
    {"name": "random_rank_k", "k": [1, 3], "draws": 2},
    {"name": "random_rank_k", "k": 2, "side": "rows", "norm_matched": True},
    {"name": "svd_rank_k", "site": "pre_norm", "k": 2},
    {"compose": [{"name": "svd_rank_k", "site": "pre_norm", "k": 3},
                 {"name": "random_rank_k", "k": 2}, {"name": "svd_rank_k", "k": 1}]},
    {"name": "svd_rank_k", "site": "iter.1", "k": 2},
]
FLOATS = ["answer_loglik", "solution_nats", "bits_per_byte", "erank_head_input"]
LISTS = ["erank_per_iter", "erank_answer_per_iter"]


def both_ways(
    items, tokenizer, mode: str, spec: list[dict] = SPEC, **options
) -> tuple[pd.DataFrame, pd.DataFrame]:
    model = tiny_model(max_len=200)
    conditions = expand_conditions(spec, d=4, n_layers=2)
    shared, separate = split_conditions(conditions)
    assert len(separate) == 1 and len(shared) == len(conditions) - 1
    settings = dict(task="synthetic", mode=mode, n_iterations=2, eval_seed=1, batch_size=3)
    settings.update(options)
    fast = evaluate(model, tokenizer, items, conditions, **settings)
    hooked = evaluate(model, tokenizer, items, conditions, shared_backbone=False, **settings)
    return fast, hooked


def assert_same_records(fast: pd.DataFrame, hooked: pd.DataFrame) -> None:
    exact = [c for c in fast.columns if c not in FLOATS + LISTS]
    pd.testing.assert_frame_equal(fast[exact], hooked[exact])
    floats = fast[FLOATS].to_numpy(float), hooked[FLOATS].to_numpy(float)
    np.testing.assert_allclose(*floats, rtol=1e-5, atol=1e-6)
    for column in LISTS:
        np.testing.assert_allclose(np.stack(fast[column]), np.stack(hooked[column]), rtol=1e-5)
    # The unablated condition is bit-identical: no intervention arithmetic touches it.
    none_fast, none_hooked = fast[fast.condition == "none"], hooked[hooked.condition == "none"]
    pd.testing.assert_frame_equal(none_fast, none_hooked)


def test_teacher_forced_shared_pass_equals_hooked_passes(items, tokenizer):
    fast, hooked = both_ways(items, tokenizer, "teacher_forced")
    assert_same_records(fast, hooked)
    # The ablations did something (so the equality is not vacuous).
    by_condition = fast.groupby("condition", sort=False).solution_nats.mean()
    assert by_condition["svd_rank_k@head_input:k=1"] != pytest.approx(by_condition["none"])


def test_generative_shared_prefill_equals_hooked_decoding(items, tokenizer):
    # One condition of each kind: svd, random, pre_norm, composed, and a hooked one.
    spec = [{"name": "svd_rank_k", "k": 1}, {"name": "random_rank_k", "k": 2},
            *SPEC[-3:]]
    fast, hooked = both_ways(items[:2], tokenizer, "generative", spec, max_new_tokens=4)
    assert_same_records(fast, hooked)
    assert (fast.prediction.str.len() > 0).all()


def test_head_input_erank_from_known_spectra_equals_decomposing_the_cut():
    # Invariant: the effective rank taken from a cut's known spectrum (top-k singular
    # values; those of Qᵀ Y or Y Q) agrees with decomposing the ablated matrices, up to
    # the float32 round-off of the ablated matrices.
    import torch

    from ablate.evaluation.shared_backbone import BackboneEnds
    from ablate.rank import effective_rank

    generator = torch.Generator().manual_seed(0)
    Y = torch.randn(50, 8, 8, generator=generator) * torch.exp(-torch.arange(8) / 3.0)
    conditions = expand_conditions(
        [{"name": "svd_rank_k", "k": [1, 3, 8]},
         {"name": "svd_rank_k", "k": 2, "norm_matched": True},
         {"name": "random_rank_k", "k": [1, 5], "draws": 2},
         {"name": "random_rank_k", "k": 3, "side": "rows"}], d=8, n_layers=2)
    ends = BackboneEnds(pre_norm=Y, head_input=Y)
    for condition in conditions:
        ablated = ends.condition_head_input(condition, lambda x: x, eval_seed=4)
        fast = ends.head_input_erank(condition, ablated, eval_seed=4)
        torch.testing.assert_close(fast, effective_rank(ablated), rtol=1e-5, atol=0)
