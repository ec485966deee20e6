"""Research matrix-CODI checkpoints: safe loading, key layout, the GPT-2 latent loop."""

from __future__ import annotations

import json

import pytest
import torch

from ablate.codi.bottleneck import READOUTS, MatrixBottleneck
from ablate.codi.evaluation import evaluate_items
from ablate.codi.research import load_research_codi, read_research_file
from ablate.errors import AblateError
from ablate.tasks import get_task
from tests.codi.conftest import synthetic_items

TASK = get_task("synthetic")

HIDDEN, D = 32, 4


def tiny_gpt2(vocab: int = 260, seed: int = 0, positions: int = 256):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=HIDDEN, n_head=2, n_positions=positions,
                        vocab_size=vocab, bos_token_id=None, eos_token_id=None)
    return GPT2LMHeadModel(config)


def research_state(vocab: int = 260, readout: str = "flatten", matrix: bool = True,
                   positions: int = 256) -> dict:
    state = {f"gpt2.{k}": v for k, v in tiny_gpt2(vocab, positions=positions).state_dict().items()}
    torch.manual_seed(1)
    if matrix:
        bottleneck = MatrixBottleneck(HIDDEN, D, readout=readout)
        state.update({f"bottleneck.{k}": v for k, v in bottleneck.state_dict().items()})
    else:
        norm = torch.nn.LayerNorm(HIDDEN)
        state.update({f"feedback_proj.{k}": v for k, v in norm.state_dict().items()})
    return state


def save(path, state, **extra):
    # The research cfg holds a tuple (betas); weights_only loading must accept it.
    cfg = {"betas": (0.9, 0.98), "n_latents": 6, "n_head": 2, **extra.pop("cfg", {})}
    torch.save({"model": state, "cfg": cfg, "use_matrix_bottleneck": extra.pop("matrix", True),
                "tokenizer_len": extra.pop("tokenizer_len", 260)}, path)
    return path


def test_bottleneck_thinker_has_the_21_research_keys():
    keys = [k for k in MatrixBottleneck(HIDDEN, D).state_dict() if k.startswith("thinker.")]
    assert len(keys) == 21 and "thinker.I" in keys
    assert MatrixBottleneck(768, 16).w_up.weight.shape == (256, 768)


@pytest.mark.parametrize("readout", READOUTS)
def test_every_readout_maps_h_to_a_hidden_vector(readout):
    bottleneck = MatrixBottleneck(HIDDEN, D, readout=readout)
    Z = bottleneck.matrix(torch.randn(3, HIDDEN))
    assert Z.shape == (3, D, D) and bottleneck.readout(Z).shape == (3, HIDDEN)


def test_round_trip_loads_and_the_cached_loop_equals_recomputation(tmp_path, gpt2_tokenizer_dir):
    path = save(tmp_path / "best_run_b_matrix.pt", research_state())
    codi = load_research_codi(path, tokenizer=gpt2_tokenizer_dir)
    assert codi.mat_dim == D and codi.n_latents == 6
    items = synthetic_items(3)
    cached = evaluate_items(codi, items, 3, task=TASK)
    codi.use_cache = False  # the research way: re-run the growing sequence each step
    rerun = evaluate_items(codi, items, 3, task=TASK)
    for a, b in zip(cached, rerun, strict=True):
        assert a.solution.latents.shape == (3, D, D)
        torch.testing.assert_close(a.solution.latents, b.solution.latents, atol=1e-5, rtol=1e-4)
        assert a.solution.generation == b.solution.generation
        assert abs(a.solution.answer_loglik - b.solution.answer_loglik) < 1e-3


def test_left_padding_never_changes_a_question(tmp_path, gpt2_tokenizer_dir):
    codi = load_research_codi(save(tmp_path / "b.pt", research_state()),
                              tokenizer=gpt2_tokenizer_dir)
    items = synthetic_items(3)
    together = evaluate_items(codi, items, 2, task=TASK, batch_size=3)
    for item, batched in zip(items, together, strict=True):
        alone = evaluate_items(codi, [item], 2, task=TASK, batch_size=1)[0]
        torch.testing.assert_close(batched.solution.latents, alone.solution.latents,
                                   atol=1e-5, rtol=1e-4)


def test_a_rank_cut_at_the_latent_hook_points_reaches_the_observable(tmp_path,
                                                                      gpt2_tokenizer_dir):
    from ablate.interventions import expand_conditions

    codi = load_research_codi(save(tmp_path / "b.pt", research_state()),
                              tokenizer=gpt2_tokenizer_dir)
    cut = expand_conditions([{"name": "svd_rank_k", "site": "latent", "k": 1}], d=D,
                            n_layers=1, include_unablated=False)[0]
    outcome = evaluate_items(codi, synthetic_items(1), 3, task=TASK,
                             hooks=cut.hooks(eval_seed=0))[0]
    singular = torch.linalg.svdvals(outcome.solution.latents.double())  # (3, D)
    assert (singular[:, 1:] < 1e-5 * singular[:, :1]).all()


def test_vanilla_checkpoint_has_no_matrix_latents(tmp_path, gpt2_tokenizer_dir):
    path = save(tmp_path / "best_run_a_vanilla.pt", research_state(matrix=False), matrix=False)
    codi = load_research_codi(path, tokenizer=gpt2_tokenizer_dir)
    assert codi.mat_dim is None
    assert evaluate_items(codi, synthetic_items(1), 2, task=TASK)[0].solution.latents is None


def test_checkpoint_without_the_special_tokens_is_refused_in_one_line(tmp_path,
                                                                      gpt2_tokenizer_dir):
    # 257 rows = GPT-2's own vocabulary: saved before <bot>, <eot>, <latent> were added.
    path = save(tmp_path / "b.pt", research_state(vocab=257), tokenizer_len=257)
    with pytest.raises(AblateError, match="without the CODI special tokens") as err:
        load_research_codi(path, tokenizer=gpt2_tokenizer_dir)
    assert "\n" not in str(err.value)


def test_a_tokenizer_of_another_size_is_named_as_the_mismatch(tmp_path, gpt2_tokenizer_dir):
    # 258 rows: neither GPT-2's 257 ids (saved without the specials) nor the 260 of this
    # tokenizer with them, so the tokenizer is what does not match.
    path = save(tmp_path / "b.pt", research_state(vocab=258), tokenizer_len=258)
    with pytest.raises(AblateError) as err:
        load_research_codi(path, tokenizer=gpt2_tokenizer_dir)
    assert str(err.value) == (
        f"{path}: the tokenizer does not match: {gpt2_tokenizer_dir} has 260 ids with <bot>, "
        "<eot>, <latent> but the checkpoint's embedding has 258 rows (tokenizer_len 258); "
        "pass the tokenizer it was trained with (--tokenizer DIR)")
    larger = save(tmp_path / "c.pt", research_state(vocab=270), tokenizer_len=270)
    with pytest.raises(AblateError, match="the tokenizer does not match.*270 rows"):
        load_research_codi(larger, tokenizer=gpt2_tokenizer_dir)


def test_a_problem_longer_than_gpt2_positions_is_refused_up_front(tmp_path, gpt2_tokenizer_dir,
                                                                  capsys):
    # Was: an IndexError traceback from GPT-2's position embedding mid-evaluation.
    from ablate.cli import main

    path = save(tmp_path / "b.pt", research_state(positions=48))
    args = ["codi", "eval", str(path), "--kind", "research", "--tokenizer",
            str(gpt2_tokenizer_dir), "--limit", "2", "--latents", "2", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "but this research CODI checkpoint has n_positions=48" in lines[0]
    room = int(lines[0].split("--max-question-tokens ")[1].split()[0])
    assert main([*args, "--max-question-tokens", str(room)]) == 0
    assert json.loads(capsys.readouterr().out)["n_items"] == 2


def test_pickled_code_is_refused_not_run(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": research_state(), "cfg": {"hook": AblateError("x")}}, path)
    with pytest.raises(AblateError, match="weights_only") as err:
        read_research_file(path)
    assert "\n" not in str(err.value)


def test_wrapper_prefixes_are_stripped(tmp_path):
    state = {f"module.{k}": v for k, v in research_state().items()}
    torch.save({"model_state_dict": state}, tmp_path / "w.pt")
    loaded, meta = read_research_file(tmp_path / "w.pt")
    assert all(k.startswith(("gpt2.", "bottleneck.")) for k in loaded) and meta == {}


def test_ambiguous_bilinear_readout_follows_the_cfg(tmp_path, gpt2_tokenizer_dir):
    path = save(tmp_path / "b.pt", research_state(readout="bilinear_gelu"),
                cfg={"readout": "bilinear_gelu"})
    codi = load_research_codi(path, tokenizer=gpt2_tokenizer_dir)
    assert codi.bottleneck.readout_kind == "bilinear_gelu"
    with pytest.raises(AblateError, match="does not match the weights"):
        load_research_codi(save(tmp_path / "c.pt", research_state(), cfg={"readout": "quadratic"}),
                           tokenizer=gpt2_tokenizer_dir)


def test_gpt2_cache_is_passed_under_the_name_the_installed_transformers_uses():
    # Invariant: transformers 5.x names the key/value cache `cache` (past_key_values is
    # deprecated there and due to be removed); 4.x (still allowed) only knows
    # past_key_values.
    from ablate.codi.research import cache_keyword

    def old_forward(input_ids=None, past_key_values=None, attention_mask=None):
        return None

    def new_forward(input_ids=None, cache=None, attention_mask=None, **kwargs):
        return None

    assert cache_keyword(old_forward) == "past_key_values"
    assert cache_keyword(new_forward) == "cache"
