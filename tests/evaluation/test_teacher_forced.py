"""Teacher-forced evaluation: metrics against an independent numpy float64 computation,
padding invariance, truncation, record schema and determinism."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import log_softmax

from ablate.errors import AblateError
from ablate.evaluation import EVALUATION_COLUMNS, evaluate
from ablate.evaluation.teacher_forced import answer_token_span
from ablate.interventions import UNABLATED, expand_conditions
from ablate.tokenizer import ByteTokenizer
from tests.conftest import tiny_model

T = 2
NUMERIC = ["answer_loglik", "solution_nats", "bits_per_byte", "erank_head_input"]


def run(model, tokenizer, items, conditions=(UNABLATED,), **options) -> pd.DataFrame:
    settings = dict(task="synthetic", mode="teacher_forced", n_iterations=T, eval_seed=0,
                    batch_size=4)
    settings.update(options)
    return evaluate(model, tokenizer, items, list(conditions), **settings)


def numpy_erank(matrices: np.ndarray) -> np.ndarray:
    s = np.linalg.svd(matrices, compute_uv=False)
    p = s / s.sum(-1, keepdims=True)
    return np.exp(-(p * np.log(np.where(p > 0, p, 1.0))).sum(-1))


@torch.no_grad()
def test_metrics_match_an_independent_float64_computation(items, tokenizer):
    model = tiny_model(max_len=160)
    frame = run(model, tokenizer, items)
    for item, row in zip(items, frame.itertuples(), strict=True):
        prompt = f"Question: {item.question}\nAnswer:"
        target = f" {item.solution}\n#### {item.answer}"
        ids = list(prompt.encode()) + list(target.encode())
        out = model(torch.tensor([ids]), T, return_states=True)
        logits = out.logits[0].double().numpy()
        logp = log_softmax(logits, axis=-1)
        n_prompt, n_target = len(prompt.encode()), len(target.encode())
        positions = np.arange(n_prompt - 1, n_prompt + n_target - 1)
        token_logp = logp[positions, ids[n_prompt:]]
        n_answer = len(item.answer.encode())  # the answer ends the target
        assert row.n_prompt_tokens == n_prompt and row.n_target_tokens == n_target
        assert row.solution_bytes == n_target
        assert row.solution_nats == pytest.approx(-token_logp.sum(), rel=1e-5)
        assert row.answer_loglik == pytest.approx(token_logp[-n_answer:].sum(), rel=1e-5)
        assert row.bits_per_byte == pytest.approx(-token_logp.sum() / math.log(2) / n_target,
                                                  rel=1e-5)
        argmax = logits[positions[-n_answer:]].argmax(-1)
        assert row.tf_exact_match == bool((argmax == ids[-n_answer:]).all())
        assert row.correct == float(row.tf_exact_match)
        ranks = [numpy_erank(S[0].double().numpy()) for S in out.states]
        np.testing.assert_allclose(row.erank_per_iter, [r.mean() for r in ranks], rtol=1e-6)
        np.testing.assert_allclose(row.erank_answer_per_iter,
                                   [r[positions[-n_answer:]].mean() for r in ranks], rtol=1e-6)


def test_answer_span_covers_exactly_the_answer_tokens(tokenizer):
    target = " 3+4=<<3+4=7>>7\n#### 1,080"
    ids = tokenizer.encode(target)
    start = len(target.encode()) - len(b"1,080")
    first, last = answer_token_span(tokenizer, ids, (start, len(target.encode())))
    assert tokenizer.decode(ids[first:last]) == "1,080"
    # Multi-byte characters: a token overlapping the span is part of it.
    accented = " café #### é9"
    ids = tokenizer.encode(accented)
    raw = accented.encode()
    first, last = answer_token_span(tokenizer, ids, (raw.index("é9".encode()), len(raw)))
    assert tokenizer.decode(ids[first:last]) == "é9"


def test_padding_and_batch_composition_change_no_metric(items, tokenizer):
    # Right padding behind a causal mask: batch size 1 (no padding) equals batch size 5.
    model = tiny_model(max_len=160)
    conditions = expand_conditions([{"name": "svd_rank_k", "k": 2},
                                    {"name": "random_rank_k", "site": "iter.1", "k": 2}],
                                   d=4, n_layers=2)
    alone = run(model, tokenizer, items, conditions, batch_size=1)
    padded = run(model, tokenizer, items, conditions, batch_size=5)
    pd.testing.assert_frame_equal(alone.drop(columns=NUMERIC + ["erank_per_iter",
                                                                "erank_answer_per_iter"]),
                                  padded.drop(columns=NUMERIC + ["erank_per_iter",
                                                                 "erank_answer_per_iter"]))
    np.testing.assert_allclose(alone[NUMERIC].to_numpy(float), padded[NUMERIC].to_numpy(float),
                               rtol=1e-5)
    np.testing.assert_allclose(np.stack(alone.erank_per_iter), np.stack(padded.erank_per_iter),
                               rtol=1e-5)


def test_long_prompts_are_truncated_from_the_left(items, tokenizer):
    model = tiny_model(max_len=64)
    frame = run(model, tokenizer, items[:2])
    assert (frame.n_prompt_tokens + frame.n_target_tokens == 64).all()
    assert (frame.prompt_truncated > 0).all()
    # The record equals evaluating the truncated prompt directly.
    item = items[0]
    kept = frame.n_prompt_tokens[0]
    prompt = f"Question: {item.question}\nAnswer:".encode()[-kept:]
    target = f" {item.solution}\n#### {item.answer}".encode()
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt + target)]), T).logits[0].double()
    logp = logits.log_softmax(-1)[kept - 1 : -1].gather(1, torch.tensor(list(target))[:, None])
    assert frame.solution_nats[0] == pytest.approx(-logp.sum().item(), rel=1e-5)


def test_target_longer_than_max_len_is_a_clear_error(items, tokenizer):
    with pytest.raises(AblateError, match="max_len is 16"):
        run(tiny_model(max_len=16), tokenizer, items[:1])


def test_records_follow_the_schema(items, tokenizer):
    frame = run(tiny_model(max_len=160), tokenizer, items[:2])
    assert list(frame.columns) == list(EVALUATION_COLUMNS)
    assert frame.condition.tolist() == ["none", "none"]
    assert frame.k.isna().all() and frame.draw.isna().all()
    for column in ("correct_strict", "correct_flexible", "correct_numeric", "invalid"):
        assert frame[column].isna().all()
    assert (frame.prediction == "").all()
    assert frame.item_id.tolist() == [i.item_id for i in items[:2]]
    assert frame.doc_hash.tolist() == [i.doc_hash for i in items[:2]]
    assert all(len(r) == T + 1 for r in frame.erank_per_iter)


def test_evaluation_is_deterministic_and_reports_progress(items, tokenizer):
    model = tiny_model(max_len=160)
    conditions = expand_conditions([{"name": "random_rank_k", "k": [1, 2], "draws": 2}],
                                   d=4, n_layers=2)
    done: list[int] = []
    first = run(model, tokenizer, items, conditions, progress=done.append)
    second = run(model, tokenizer, items, conditions)
    pd.testing.assert_frame_equal(first, second)
    assert sum(done) == len(items) * len(conditions)


def test_bad_arguments_are_clear_errors(items, tokenizer):
    model = tiny_model(max_len=160)
    with pytest.raises(AblateError, match="mode 'forced'"):
        run(model, tokenizer, items, mode="forced")
    with pytest.raises(AblateError, match="needs a CUDA device"):
        run(model, tokenizer, items, precision="bf16")
    with pytest.raises(AblateError, match="never fires"):
        run(model, tokenizer, items,
            expand_conditions([{"name": "svd_rank_k", "site": "iter.3", "k": 1}], d=4,
                              n_layers=2))
    with pytest.raises(AblateError, match="Unknown task"):
        run(model, ByteTokenizer(), items, task="gsm9k")


def test_batches_cut_to_bound_memory_give_the_same_records(items, tokenizer, monkeypatch):
    # Invariant: a batch evaluated as several smaller forward passes (the memory bound)
    # gives the records of one pass.
    from ablate.evaluation import batching

    model = tiny_model(max_len=160)
    whole = run(model, tokenizer, items)
    monkeypatch.setattr(batching, "MAX_PASS_ENTRIES", 16 * 60)  # d = 4: 60 positions a pass
    assert len(batching.within_memory([0, 1, 2], [50, 40, 30], d=4)) == 3
    cut = run(model, tokenizer, items)
    pd.testing.assert_frame_equal(cut, whole, rtol=1e-6, atol=1e-7)
