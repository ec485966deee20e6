"""Research matrix-CODI checkpoints: safe loading, key layout, the GPT-2 latent loop."""

from __future__ import annotations

import pytest
import torch

from ablate.codi.bottleneck import READOUTS, MatrixBottleneck
from ablate.codi.evaluation import evaluate_items
from ablate.codi.research import load_research_codi, read_research_file
from ablate.errors import AblateError
from tests.codi.conftest import synthetic_items

HIDDEN, D = 32, 4


def tiny_gpt2(vocab: int = 260, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(n_layer=2, n_embd=HIDDEN, n_head=2, n_positions=256, vocab_size=vocab,
                        bos_token_id=None, eos_token_id=None)
    return GPT2LMHeadModel(config)


def research_state(vocab: int = 260, readout: str = "flatten", matrix: bool = True) -> dict:
    state = {f"gpt2.{k}": v for k, v in tiny_gpt2(vocab).state_dict().items()}
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
    cached = evaluate_items(codi, items, 3)
    codi.use_cache = False  # the research way: re-run the growing sequence each step
    rerun = evaluate_items(codi, items, 3)
    for a, b in zip(cached, rerun, strict=True):
        assert a.solution.latents.shape == (3, D, D)
        torch.testing.assert_close(a.solution.latents, b.solution.latents, atol=1e-5, rtol=1e-4)
        assert a.solution.generation == b.solution.generation
        assert abs(a.solution.answer_loglik - b.solution.answer_loglik) < 1e-3


def test_left_padding_never_changes_a_question(tmp_path, gpt2_tokenizer_dir):
    codi = load_research_codi(save(tmp_path / "b.pt", research_state()),
                              tokenizer=gpt2_tokenizer_dir)
    items = synthetic_items(3)
    together = evaluate_items(codi, items, 2, batch_size=3)
    for item, batched in zip(items, together, strict=True):
        alone = evaluate_items(codi, [item], 2, batch_size=1)[0]
        torch.testing.assert_close(batched.solution.latents, alone.solution.latents,
                                   atol=1e-5, rtol=1e-4)


def test_rank_edit_reaches_the_observable(tmp_path, gpt2_tokenizer_dir):
    from ablate.codi.study import LatentCondition

    codi = load_research_codi(save(tmp_path / "b.pt", research_state()),
                              tokenizer=gpt2_tokenizer_dir)
    edit = LatentCondition("svd_rank_k", 1).edit(D, 0)
    outcome = evaluate_items(codi, synthetic_items(1), 3, edit=edit)[0]
    singular = torch.linalg.svdvals(outcome.solution.latents.double())  # (3, D)
    assert (singular[:, 1:] < 1e-5 * singular[:, :1]).all()


def test_vanilla_checkpoint_has_no_matrix_latents(tmp_path, gpt2_tokenizer_dir):
    path = save(tmp_path / "best_run_a_vanilla.pt", research_state(matrix=False), matrix=False)
    codi = load_research_codi(path, tokenizer=gpt2_tokenizer_dir)
    assert codi.mat_dim is None
    assert evaluate_items(codi, synthetic_items(1), 2)[0].solution.latents is None


def test_checkpoint_without_the_special_tokens_is_refused_in_one_line(tmp_path,
                                                                      gpt2_tokenizer_dir):
    # 257 rows = GPT-2's own vocabulary: saved before <bot>, <eot>, <latent> were added.
    path = save(tmp_path / "b.pt", research_state(vocab=257), tokenizer_len=257)
    with pytest.raises(AblateError, match="without the CODI special tokens") as err:
        load_research_codi(path, tokenizer=gpt2_tokenizer_dir)
    assert "\n" not in str(err.value)


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
