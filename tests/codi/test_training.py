"""CODI training pieces: GSM8K examples, the curriculum tail, config round trip, a step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ablate.codi.sequences import collate, curriculum_tail, encode_example
from ablate.codi.training import (
    CodiTrainConfig,
    build_codi,
    fitting_examples,
    learning_rate,
    train_codi,
)
from ablate.errors import AblateError
from ablate.tasks import get_task

BUNDLED = Path(__file__).resolve().parents[2] / "checkpoints" / "codi-synthetic"


def test_gsm8k_examples_take_their_steps_from_the_calculator_annotations(shared):
    items = get_task("gsm8k").load("train", path=str(shared / "data" / "gsm8k"), limit=20)
    config = CodiTrainConfig(task="gsm8k", max_len=512, max_question_tokens=300)
    codi = build_codi(CodiTrainConfig(mat_dim=4, max_len=512))
    examples = fitting_examples(codi, config, items)
    assert 0 < len(examples) <= len(items)
    first = examples[0]  # "Natalia sold clips ...": <<48/2=24>> then <<48+24=72>>
    teacher = codi.tokenizer.decode(first.teacher_ids)
    assert "<<48/2=24>>" in teacher and "<<48+24=72>>" not in teacher
    assert teacher.endswith(" The answer is: 72\n")


def test_items_too_long_for_max_len_are_dropped_or_refused():
    codi = build_codi(CodiTrainConfig(mat_dim=4))
    items = get_task("synthetic").load("train", limit=4)
    with pytest.raises(AblateError, match="max_len"):
        fitting_examples(codi, CodiTrainConfig(max_len=40), items)


def test_curriculum_tail_keeps_the_steps_not_yet_replaced():
    codi = build_codi(CodiTrainConfig(mat_dim=4))
    item = next(i for i in get_task("synthetic", min_depth=3, max_depth=3).load("train", limit=5))
    example = encode_example(codi.tokenizer, item, codi.layout)
    assert len(example.steps) == 2
    ids, start = curriculum_tail(codi.tokenizer, example, codi.layout, 1)
    text = codi.tokenizer.decode(ids)
    assert start == 0 and text.startswith("<eot> " + example.steps[1])
    assert example.steps[0] not in text and text.endswith(f"The answer is: {example.answer}\n")
    all_replaced, _ = curriculum_tail(codi.tokenizer, example, codi.layout, 2)
    assert all_replaced == example.tail_ids


def test_a_curriculum_step_skips_the_teacher():
    codi = build_codi(CodiTrainConfig(mat_dim=4))
    items = get_task("synthetic").load("train", limit=3)
    examples = [encode_example(codi.tokenizer, i, codi.layout) for i in items]
    tails = [curriculum_tail(codi.tokenizer, e, codi.layout, 0) for e in examples]
    losses = codi.losses(collate(examples, codi.pad_id, tails=tails), 0, alpha=0.0, gamma=0.0)
    assert float(losses["teacher"]) == 0.0 and float(losses["distill"]) == 0.0
    total = losses["total"].detach()
    assert torch.isfinite(total) and float(total) > 0


def test_config_round_trips_and_rejects_unknown_keys():
    config = CodiTrainConfig(schedule="curriculum", n_latents=0)
    assert CodiTrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(AblateError, match="unknown key 'step'. Did you mean 'steps'"):
        CodiTrainConfig.from_dict({"step": 3})


def test_old_key_names_load_under_the_shared_names_with_a_notice_for_files():
    # Before the trainers shared their arguments, CODI wrote max_steps, warmup_steps,
    # train_limit and eval_items; stored configs and old config files must still load.
    notices: list[str] = []
    old = {"max_steps": 7, "warmup_steps": 3, "train_limit": 40, "eval_items": 5}
    config = CodiTrainConfig.from_dict(old, "old.toml", notices=notices)
    assert (config.steps, config.warmup, config.train_items, config.val_items) == (7, 3, 40, 5)
    assert notices[0] == "old.toml: 'max_steps' is now called 'steps'; rename it there"
    assert len(notices) == 4
    assert CodiTrainConfig.from_dict(old) == config  # stored metadata: no notice asked for
    with pytest.raises(AblateError, match="both 'max_steps' and 'steps'"):
        CodiTrainConfig.from_dict({"max_steps": 7, "steps": 7})


def test_the_bundled_checkpoint_config_loads_and_is_the_default_recipe():
    # checkpoints/codi-synthetic stores its config under the old names; it is the defaults
    # plus the wall-clock cap it was trained with (600 steps finished well before it).
    stored = json.loads((BUNDLED / "ablate_meta.json").read_text())["train_config"]
    config = CodiTrainConfig.from_dict(stored, "ablate_meta.json")
    assert config == CodiTrainConfig(time_limit_s=900.0)
    assert config.steps == 600 and config.val_items == 300 and config.warmup == 50


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    config = CodiTrainConfig(lr=1.0, warmup=10, steps=110)
    assert learning_rate(config, 0) == pytest.approx(0.1)
    assert learning_rate(config, 10) == pytest.approx(1.0)
    assert learning_rate(config, 110) == pytest.approx(0.1)


def test_a_short_run_trains_and_reports_the_chance_baselines():
    config = CodiTrainConfig(mat_dim=4, steps=2, batch_size=2, val_items=3, n_latents=1,
                             task_options={"n_items": 10, "max_depth": 2})
    result = train_codi(config, log_every=1)
    assert [row["step"] for row in result.history] == [1, 2]
    metrics = result.metrics
    assert metrics["eval_split"] == "validation" and metrics["eval_items"] == 3
    assert 0 <= metrics["chance"] <= metrics["best_constant"] <= 1


def test_task_options_default_to_the_synthetic_settings_only_for_the_synthetic_task():
    # The synthetic defaults (depth etc.) are not options of other tasks, so they must not leak.
    assert CodiTrainConfig().task_options["max_depth"] == 3
    assert CodiTrainConfig(task="gsm8k").task_options == {}
    assert CodiTrainConfig.from_dict(CodiTrainConfig(task="gsm8k").to_dict()).task_options == {}
