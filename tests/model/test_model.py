"""Model behaviour: hooks, iterations, decoding cache, embeddings, save/load."""

from __future__ import annotations

import pytest
import torch

from ablate.errors import AblateError
from ablate.model import DecodeCache, MatrixThinker, hook_names
from tests.conftest import tiny_model


def test_noop_hooks_leave_logits_bit_identical(model, ids):
    plain = model(ids).logits
    seen = []
    with model.hooks({"*": lambda x, name: seen.append(name)}):
        hooked = model(ids).logits
    assert torch.equal(plain, hooked)
    assert seen == hook_names(model.config.n_iterations, model.config.n_layers)


def test_hooks_are_removed_after_an_exception(model, ids):
    def boom(x, name):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError), model.hooks({"head_input": boom}):
        model(ids)
    assert model._hook_table == []
    model(ids)  # runs without the hook


def test_hook_can_edit_state_per_iteration(model, ids):
    # Zeroing the head input of a MultiProbe head gives all-zero logits; hook names are
    # per iteration, so editing iteration 2 changes iteration-3 states but not iteration 1.
    with model.hooks({"head_input": lambda x, n: torch.zeros_like(x)}):
        assert torch.count_nonzero(model(ids).logits) == 0
    base = model(ids, 3, return_states=True).states
    with model.hooks({"iter.2": lambda x, n: x * 0.5}):
        edited = model(ids, 3, return_states=True).states
    assert torch.equal(base[1], edited[1])
    assert not torch.allclose(base[3], edited[3])


def test_unknown_hook_site_is_a_clear_error(model):
    with pytest.raises(AblateError, match="Unknown hook site"), model.hooks({"nowhere": print}):
        pass
    with pytest.raises(AblateError, match="layer 7"), model.hooks({"iter.1.layer.7": print}):
        pass


def test_zero_iterations_reads_starting_matrices(model, ids):
    out = model(ids, 0, return_states=True)
    assert len(out.states) == 1
    ref = model.head(model.final_norm(model.embed(ids)))
    assert torch.equal(out.logits, ref)


@pytest.mark.parametrize("attention", ["frobenius", "matrix3d"])
@pytest.mark.parametrize("embedding", ["outer", "bigram"])
def test_cached_decoding_equals_full_recomputation(attention, embedding, ids):
    model = tiny_model(attention=attention, embedding=embedding, embedding_rank=2)
    full = model(ids).logits
    cache = DecodeCache()
    parts = [model(ids[:, :6], cache=cache).logits]
    parts += [model(ids[:, i : i + 1], cache=cache).logits for i in range(6, ids.shape[1])]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)


def test_left_padding_mask_reproduces_unpadded_logits(model, ids):
    # A left-padded row with shifted positions gives the same logits as the row alone.
    row = ids[:1, 3:]
    pad = torch.zeros(1, 3, dtype=ids.dtype)
    padded = torch.cat([pad, row], 1)
    mask = torch.cat([torch.zeros(1, 3), torch.ones(1, row.shape[1])], 1)
    pos = (torch.arange(padded.shape[1]) - 3).clamp(min=0)[None]
    out = model(padded, attention_mask=mask, position_ids=pos).logits[:, 3:]
    torch.testing.assert_close(out, model(row).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("embedding", "r"), [("outer", 1), ("rank_r", 3), ("bigram", 2),
                                               ("pairwise", 1)])
def test_starting_embedding_rank_is_bounded(embedding, r, ids):
    model = tiny_model(embedding=embedding, embedding_rank=r, mat_dim=4)
    with torch.no_grad():
        for p in (model.pos_u, model.pos_v):
            p.weight.zero_()  # isolate the token term
        M0 = model.embed(ids)
    ranks = torch.linalg.matrix_rank(M0)
    bound = 4 if embedding == "pairwise" else r
    assert int(ranks.max()) <= bound
    if embedding != "outer":
        assert int(ranks.max()) > 1


def test_too_long_input_names_max_len(model):
    with pytest.raises(AblateError, match="max_len is 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_save_pretrained_round_trip_and_auto_class(tmp_path, model, ids):
    from transformers import AutoModel

    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, MatrixThinker)
    assert torch.equal(loaded.eval()(ids).logits, model(ids).logits)
    assert loaded.state_dict().keys() == model.state_dict().keys()


def test_vector_baseline_has_spec_parameter_count():
    from ablate.model.vector import VectorThinker, vector_parameter_count

    with torch.device("meta"):
        model = VectorThinker(vocab_size=50257, max_len=2048)
    assert vector_parameter_count(model) == 5_149_248
    small = VectorThinker(d_model=8, n_layers=1, n_heads=2, max_len=16, vocab_size=11).eval()
    logits, info = small(torch.zeros(1, 5, dtype=torch.long), n_iterations=2)
    assert logits.shape == (1, 5, 11) and info["model_type"] == "vector"


def test_forked_cache_branches_without_touching_the_original(model, ids):
    # Invariant: decoding different continuations from a fork leaves the parent usable.
    cache = DecodeCache()
    model(ids[:, :6], cache=cache)
    branch = cache.fork()
    a = model(ids[:, 6:7], cache=branch).logits
    b = model(ids[:, 6:7], cache=cache).logits
    assert torch.equal(a, b) and cache.length == branch.length == 7


def test_padded_cache_keeps_masking_padding_in_later_chunks(model, ids):
    # Invariant: a left-padded prompt decoded in chunks without further masks gives the
    # logits of the unpadded row (the cache remembers which keys are padding).
    row = ids[:1, 2:]
    padded = torch.cat([torch.zeros(1, 2, dtype=ids.dtype), row], 1)
    mask = torch.cat([torch.zeros(1, 2), torch.ones(1, 4)], 1)
    pos = (torch.arange(6) - 2).clamp(min=0)[None]
    cache = DecodeCache()
    first = model(padded[:, :6], attention_mask=mask, position_ids=pos, cache=cache).logits
    rest = model(padded[:, 6:], position_ids=torch.arange(4, row.shape[1])[None],
                 cache=cache).logits
    full = model(row).logits
    torch.testing.assert_close(torch.cat([first[:, 2:], rest], 1), full, rtol=1e-5, atol=1e-5)
