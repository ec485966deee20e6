"""Native matrix-CODI: the cached latent loop, padding, losses and settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ablate.codi.losses import distillation_loss, masked_cross_entropy
from ablate.codi.native import CodiSettings, NativeCodi
from ablate.codi.saving import load_codi, save_codi
from ablate.codi.sequences import Padded, collate, encode_example, pad_sequences, target_mask
from ablate.codi.training import CodiTrainConfig, curriculum_stage
from ablate.errors import AblateError
from ablate.tokenizer import ByteTokenizer
from tests.codi.conftest import tiny_codi
from tests.conftest import tiny_model


def test_cached_latent_loop_equals_full_recomputation(codi, batch):
    # Causal attention in every iteration: caching keys/values per (iteration, layer)
    # must give what re-running the growing sequence from scratch gives.
    cached = codi.think(batch.question, 3)
    full = codi.think(batch.question, 3, use_cache=False)
    for a, b in zip(cached.latents, full.latents, strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
    logits_a, states_a = codi.extend(cached, batch.tail, collect_at=batch.tail_cue)
    logits_b, states_b = codi.extend(full, batch.tail, collect_at=batch.tail_cue)
    real = batch.tail.mask
    torch.testing.assert_close(logits_a[real], logits_b[real], atol=2e-5, rtol=1e-4)
    assert sorted(states_a) == sorted(states_b) and len(states_a) == 2 * 2  # T x layers
    for name in states_a:
        torch.testing.assert_close(states_a[name], states_b[name], atol=2e-5, rtol=1e-4)


def test_left_padding_never_changes_a_question(codi, items):
    # Positions count real tokens, padding is masked: a padded row equals its own run.
    examples = [encode_example(codi.tokenizer, item, codi.layout) for item in items]
    together = codi.think(collate(examples, codi.pad_id).question, 2).latents
    for row, example in enumerate(examples):
        alone = codi.think(collate([example], codi.pad_id).question, 2).latents
        for j in range(2):
            torch.testing.assert_close(together[j][row], alone[j][0], atol=2e-5, rtol=1e-4)


def test_zero_latents_is_a_plain_token_sequence(codi, items):
    # n_latents = 0: question, <bot>, tail are ordinary tokens, so the CODI path must give
    # the thinker's own logits on the concatenated ids.
    example = encode_example(codi.tokenizer, items[0], codi.layout)
    batch = collate([example], codi.pad_id)
    run = codi.think(batch.question, 0)
    assert run.latents == []
    logits, _ = codi.extend(run, batch.tail)
    ids = list(example.question_ids) + [codi.bot_id] + list(example.tail_ids)
    reference = codi.thinker(torch.tensor([ids]), codi.settings.n_iterations).logits
    torch.testing.assert_close(logits[0], reference[0, -len(example.tail_ids):],
                               atol=2e-5, rtol=1e-4)


def test_shared_question_teacher_equals_a_standalone_teacher(codi, items):
    examples = [encode_example(codi.tokenizer, item, codi.layout) for item in items]
    batch = collate(examples, codi.pad_id)
    shared_logits, shared_states = codi.teacher_from(codi.read_question(batch.question),
                                                     batch.teacher, batch.teacher_cue)
    full = pad_sequences([e.teacher_ids for e in examples], codi.pad_id, left=False)
    starts = torch.tensor([e.teacher_start for e in examples])
    cues = torch.tensor([e.teacher_cue for e in examples])
    full_logits, full_states = codi.teacher(full, cues)
    ce_shared = masked_cross_entropy(shared_logits, batch.teacher.ids,
                                     target_mask(batch.teacher.mask, batch.teacher_start))
    ce_full = masked_cross_entropy(full_logits, full.ids, target_mask(full.mask, starts))
    torch.testing.assert_close(ce_shared, ce_full, atol=1e-5, rtol=1e-5)
    for name in full_states:
        torch.testing.assert_close(shared_states[name], full_states[name], atol=2e-5, rtol=1e-4)


def _scramble_padding(padded: Padded, generator: torch.Generator) -> Padded:
    noise = torch.randint(0, 256, padded.ids.shape, generator=generator)
    return Padded(torch.where(padded.mask, padded.ids, noise), padded.mask)


def test_losses_ignore_what_the_padding_holds(codi, batch):
    # Padding never counts: replacing pad ids by random bytes changes no loss term.
    generator = torch.Generator().manual_seed(0)
    assert not batch.question.mask.all() and not batch.tail.mask.all()
    reference = codi.losses(batch, 3)
    batch.question = _scramble_padding(batch.question, generator)
    batch.teacher = _scramble_padding(batch.teacher, generator)
    batch.tail = _scramble_padding(batch.tail, generator)
    scrambled = codi.losses(batch, 3)
    for name in ("teacher", "student", "distill", "total"):
        torch.testing.assert_close(scrambled[name], reference[name], atol=1e-6, rtol=1e-6)


def test_losses_train_the_projection_through_the_latent_loop(batch):
    codi = tiny_codi().train()
    codi.losses(batch, 3)["total"].backward()
    grads = [p.grad for p in codi.projection.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)


def test_distillation_is_zero_when_student_equals_teacher():
    states = [torch.randn(3, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    assert float(distillation_loss(states, [s.clone() for s in states])) == 0.0


def test_distillation_matches_float64_smooth_l1_over_teacher_std():
    rng = np.random.default_rng(0)
    student = [rng.normal(size=(2, 3, 3)) * 2, rng.normal(size=(2, 3, 3))]
    teacher = [rng.normal(size=(2, 3, 3)), rng.normal(size=(2, 3, 3)) * 0.5]
    expected = []
    for s, t in zip(student, teacher, strict=True):
        diff = np.abs(s - t)
        smooth = np.where(diff < 1.0, 0.5 * diff**2, diff - 0.5).mean()
        expected.append(smooth / t.std(ddof=1))
    got = distillation_loss([torch.tensor(s, dtype=torch.float32) for s in student],
                            [torch.tensor(t, dtype=torch.float32) for t in teacher])
    assert abs(float(got) - float(np.mean(expected))) < 1e-5


def test_masked_cross_entropy_matches_float64_on_the_target_positions():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 5))
    ids = np.array([[1, 2, 3, 0], [4, 4, 0, 0]])
    mask = np.array([[True, True, True, True], [True, True, False, False]])
    start = np.array([1, 0])
    # Targets: row 0 positions 1, 2 (predicting ids 3, 0); row 1 position 0 (predicting 4).
    picks = [(0, 1, 3), (0, 2, 0), (1, 0, 4)]
    nll = [np.log(np.exp(logits[b, i]).sum()) - logits[b, i, t] for b, i, t in picks]
    targets = target_mask(torch.tensor(mask), torch.tensor(start))
    got = masked_cross_entropy(torch.tensor(logits, dtype=torch.float32), torch.tensor(ids),
                               targets)
    assert abs(float(got) - float(np.mean(nll))) < 1e-5


def test_teacher_sees_the_steps_without_the_last_and_the_cue_indexes_its_colon(items):
    tokenizer = ByteTokenizer(("<pad>", "<bot>", "<eot>"))
    item = max(items, key=lambda i: len(i.steps))
    example = encode_example(tokenizer, item, CodiSettings().layout)
    text = tokenizer.decode(example.teacher_ids)
    assert text.endswith(f" The answer is: {item.answer}\n")
    assert all(step in text for step in item.steps[:-1]) and item.steps[-1] not in text
    assert tokenizer.decode([example.teacher_ids[example.teacher_cue]]) == ":"
    assert tokenizer.decode([example.tail_ids[example.tail_cue]]) == ":"


def test_a_model_without_codi_specials_is_refused_in_one_line():
    thinker = tiny_model(vocab_size=259)
    with pytest.raises(AblateError, match="no CODI special token") as err:
        NativeCodi(thinker, ByteTokenizer(("<pad>", "<bot>", "<eot>")), CodiSettings())
    assert "\n" not in str(err.value)


def test_a_saved_checkpoint_with_unknown_settings_is_refused_in_one_line(tmp_path):
    # codi.json is read through the config core: unknown keys at either level name the
    # file, the table and the closest allowed key.
    save_codi(tiny_codi(), tmp_path / "codi", metadata={})
    path = tmp_path / "codi" / "codi.json"
    body = json.loads(path.read_text())
    for damaged, message in [({**body, "extra": 1}, "codi.json: unknown key 'extra'"),
                             ({**body, "settings": {**body["settings"], "n_latent": 2}},
                              "codi.json: settings: unknown key 'n_latent'. Did you mean "
                              "'n_latents'?")]:
        path.write_text(json.dumps(damaged))
        with pytest.raises(AblateError, match=message) as err:
            load_codi(tmp_path / "codi")
        assert "\n" not in str(err.value)


def test_settings_round_trip_and_reject_unknown_keys():
    settings = CodiSettings(projection="norm", n_latents=0)
    assert CodiSettings.from_json(settings.to_json(), "x") == settings
    with pytest.raises(AblateError, match="x: unknown key 'latents'. Did you mean 'n_latents'"):
        CodiSettings.from_json({**settings.to_json(), "latents": 2}, "x")
    with pytest.raises(AblateError, match="projection"):
        CodiSettings(projection="mlp")


def test_curriculum_replaces_one_step_per_stage_then_uses_every_latent():
    config = CodiTrainConfig(schedule="curriculum", stage_steps=10, latents_per_stage=2,
                             n_latents=6)
    assert curriculum_stage(config, 0, 2) == (0, 0)
    assert curriculum_stage(config, 15, 2) == (1, 2)
    assert curriculum_stage(config, 25, 2) == (2, 6)  # the last stage: all latents
    assert curriculum_stage(config, 999, 2) == (2, 6)
