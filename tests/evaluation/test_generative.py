"""Generative evaluation: batched cached decoding equals plain greedy decoding, stop
sequences / EOS / length cap, extraction results in the records, few-shot prompts."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ablate.evaluation import evaluate
from ablate.interventions import UNABLATED, expand_conditions
from ablate.model import MatrixThinker
from ablate.tasks import get_task
from ablate.tasks.base import Item
from ablate.tasks.outcomes import LM_EVAL_STOP
from ablate.tasks.prompts import truncate_at_stop
from ablate.tokenizer import ByteTokenizer
from tests.conftest import tiny_config, tiny_model
from tests.evaluation.conftest import synthetic_items

T = 2


def generate(model, tokenizer, items, conditions=(UNABLATED,), **options) -> pd.DataFrame:
    settings = dict(task="synthetic", mode="generative", n_iterations=T, eval_seed=0,
                    batch_size=4, max_new_tokens=6)
    settings.update(options)
    return evaluate(model, tokenizer, items, list(conditions), **settings)


@torch.no_grad()
def plain_greedy(model, prompt: list[int], hooks, n_new: int) -> list[int]:
    """Reference: re-run the whole sequence for every new token, no cache, no padding."""
    ids = list(prompt)
    with model.hooks(hooks):
        for _ in range(n_new):
            ids.append(int(model(torch.tensor([ids]), T).logits[0, -1].argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("embedding", ["outer", "bigram"])
def test_cached_batched_decoding_equals_plain_greedy(embedding, tokenizer):
    # Prompts of different lengths share a left-padded batch (bigram: same-length batches).
    items = synthetic_items(3)
    model = tiny_model(max_len=160, embedding=embedding, embedding_rank=2)
    conditions = expand_conditions([{"name": "svd_rank_k", "k": 2},
                                    {"name": "random_rank_k", "site": "iter.1", "k": 2}],
                                   d=4, n_layers=2)
    frame = generate(model, tokenizer, items, conditions, max_new_tokens=4)
    for condition in conditions:
        rows = frame[frame.condition == condition.label]
        for item, prediction in zip(items, rows.prediction, strict=True):
            prompt = tokenizer.encode(f"Question: {item.question}\nAnswer:")
            expected = tokenizer.decode(plain_greedy(model, prompt, condition.hooks(0), 4))
            # Stop sequences cut the text; the random model rarely emits them.
            assert expected.startswith(prediction)
            assert prediction == truncate_at_stop(expected, LM_EVAL_STOP)


class ScriptedThinker(MatrixThinker):
    """A tiny model whose head emits a fixed script, one token per head call, so that the
    text a decoding produces is known in advance."""

    script: list[int] = []

    def head(self, Y: torch.Tensor) -> torch.Tensor:
        token = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        logits = torch.zeros(*Y.shape[:-2], self.config.vocab_size)
        logits[..., token] = 1.0
        return logits


def scripted(text: str, tokenizer: ByteTokenizer) -> ScriptedThinker:
    torch.manual_seed(0)
    model = ScriptedThinker(tiny_config(max_len=200, vocab_size=tokenizer.vocab_size)).eval()
    model.script, model.calls = tokenizer.encode(text), 0
    return model


def item(answer: str) -> Item:
    return Item(item_id="x", question="Ann has 3 pens.", solution="3+4=7", answer=answer,
                answer_value=None, steps=(), depth_annotations=1, depth_lines=1,
                doc_hash="0123456789abcdef")


@pytest.mark.parametrize(
    ("task", "script", "gold", "prediction", "strict", "flexible", "numeric", "invalid",
     "correct"),
    [
        ("gsm8k", " 3+4=7\n#### 7\n\nQuestion: x", "7", " 3+4=7\n#### 7\n\n", True, True,
         True, False, 1.0),
        # lm-eval's exact match says wrong, the numeric match right: `correct` is strict.
        ("gsm8k", " 3+4=7\n#### 7.0\n\nQuestion:", "7", " 3+4=7\n#### 7.0\n\n", False,
         False, True, False, 0.0),
        ("gsm8k", " 3+4=7\n#### 1,080\n\nQuestion:", "1,080", " 3+4=7\n#### 1,080\n\n",
         True, True, True, False, 1.0),
        ("gsm8k", " it is 7\n\nQuestion:", "7", " it is 7\n\n", False, True, False, True, 0.0),
        # A blank line inside the answer no longer ends it (lm-eval's stops).
        ("gsm8k", " Step 1: 3+4=7\n\nStep 2: 7*2=14\n#### 24\n\nQuestion:", "24",
         " Step 1: 3+4=7\n\nStep 2: 7*2=14\n#### 24\n\n", True, True, True, False, 1.0),
        ("gsm8k", " 3+4=7\n#### 7</s> 8", "7", " 3+4=7\n#### 7", True, True, True, False, 1.0),
        ("synthetic", " 3+4=7\n#### 8\n\nQuestion:", "7", " 3+4=7\n#### 8\n\n", False, False,
         False, False, 0.0),
        ("synthetic", " 3+4=7\n#### 07<|im_end|>", "7", " 3+4=7\n#### 07", False, False, True,
         False, 0.0),
        ("openr1", " so \\boxed{\\frac{1}{2}}\n\nQuestion:", "0.5", " so \\boxed{\\frac{1}{2}}",
         False, True, True, False, 1.0),
    ],
)
def test_extraction_fills_the_records(task, script, gold, prediction, strict, flexible, numeric,
                                      invalid, correct, tokenizer):
    model = scripted(script, tokenizer)
    frame = generate(model, tokenizer, [item(gold)], task=task, max_new_tokens=60)
    row = frame.iloc[0]
    assert row.prediction == prediction
    assert (row.correct_strict, row.correct_flexible, row.correct_numeric, row.invalid) == (
        strict, flexible, numeric, invalid)
    assert row.correct == correct
    for column in ("answer_loglik", "solution_nats", "bits_per_byte", "tf_exact_match"):
        assert pd.isna(row[column])


@pytest.mark.parametrize(("outcome", "correct"), [("strict", 0.0), ("flexible", 0.0),
                                                  ("numeric", 1.0)])
def test_the_outcome_option_chooses_the_primary_outcome(outcome, correct, tokenizer):
    task = get_task("gsm8k", outcome=outcome)
    frame = generate(scripted(" 3+4=7\n#### 7.0\n\nQuestion:", tokenizer), tokenizer,
                     [item("7")], task=task, max_new_tokens=60)
    assert frame.correct[0] == correct
    assert frame.correct_numeric[0] and not frame.correct_strict[0]


def test_the_stop_option_cuts_the_generation(tokenizer):
    # "\n\n", the stop of ablate before lm-eval's, cuts this answer off its "#### 24" line.
    script = " Step 1: 3+4=7\n\nStep 2: 7*2=14\n#### 24\n\nQuestion:"
    frame = generate(scripted(script, tokenizer), tokenizer, [item("24")],
                     task=get_task("gsm8k", stop=["\n\n"]), max_new_tokens=60)
    assert frame.prediction[0] == " Step 1: 3+4=7"
    assert frame.invalid[0] and frame.correct[0] == 0.0


def test_length_cap_and_eos_end_a_generation():
    tokenizer = ByteTokenizer(("<eos>",))
    frame = generate(scripted(" 12345678", tokenizer), tokenizer, [item("7")],
                     max_new_tokens=4)
    assert frame.prediction[0] == " 123"
    frame = generate(scripted(" 12<eos>345", tokenizer), tokenizer, [item("7")],
                     max_new_tokens=20)
    assert frame.prediction[0] == " 12"


def test_few_shot_prompts_are_seeded_per_item_and_shared_by_conditions(tokenizer):
    items, train = synthetic_items(3), synthetic_items(20, "train")
    model = tiny_model(max_len=400)
    conditions = expand_conditions([{"name": "svd_rank_k", "k": 1}], d=4, n_layers=2)
    options = dict(few_shot=2, train_items=train, max_new_tokens=3)
    frame = generate(model, tokenizer, items, conditions, **options)
    again = generate(model, tokenizer, items[::-1], conditions, batch_size=1, **options)
    by_item = frame.set_index(["condition", "item_id"]).prompt_hash
    pd.testing.assert_series_equal(by_item.sort_index(),
                                   again.set_index(["condition", "item_id"]).prompt_hash
                                   .sort_index())
    # Same prompt in every condition; another eval seed draws other exemplars.
    assert (frame.groupby("item_id").prompt_hash.nunique() == 1).all()
    other = generate(model, tokenizer, items, conditions, eval_seed=1, **options)
    assert (other.prompt_hash != frame.prompt_hash).any()
    assert (frame.n_prompt_tokens > 150).all()  # two exemplars are in the prompt
