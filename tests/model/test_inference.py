"""The evaluation forward (ablate.model.inference) and the decode caches equal the
reference computation: same logits, states and hook calls up to float round-off."""

from __future__ import annotations

import pytest
import torch

from ablate.errors import AblateError
from ablate.model import DecodeCache, SharedPrefixCache, hook_names
from ablate.model import inference as inference_module
from tests.conftest import tiny_model


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # Chunks of 3 positions, so that tiny inputs span several chunks of both shapes
    # (pieces of one row, and groups of whole rows).
    monkeypatch.setattr(inference_module, "CPU_CHUNK_ENTRIES", 3 * 16)  # d = 4


def _both(model, *args, **kwargs):
    """(inference path, reference path) outputs of the same call."""
    with torch.no_grad():
        fast = model(*args, **kwargs)
        model.use_inference_path = False
        try:
            reference = model(*args, **kwargs)
        finally:
            model.use_inference_path = True
    return fast, reference


@pytest.mark.parametrize("attention", ["frobenius", "matrix3d"])
@pytest.mark.parametrize("head", ["multiprobe", "collapse"])
@pytest.mark.parametrize("length", [2, 7])
def test_inference_path_equals_reference(attention, head, length, ids):
    # Invariant: logits and every state M(0..T) and the head input agree (rows of
    # length 2 form multi-row chunks, length 7 is split within rows).
    model = tiny_model(attention=attention, head=head)
    fast, reference = _both(model, ids[:, :length], 3, return_states=True)
    torch.testing.assert_close(fast.logits, reference.logits, rtol=1e-5, atol=1e-5)
    for a, b in zip(fast.states, reference.states, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_inference_path_fires_every_hook_in_order_and_applies_edits(model, ids):
    # Invariant: the same hook names fire in the same order, a hook sees the (B, L, d, d)
    # state, and an edit inside the loop changes the result as on the reference path.
    seen: list[str] = []

    def record(x, name):
        assert x.shape == (2, 10, 4, 4)
        seen.append(name)

    with model.hooks({"*": record}), torch.no_grad():
        model(ids)
    assert seen == hook_names(model.config.n_iterations, model.config.n_layers)
    edits = {"iter.2.layer.1.attn.hook_out": lambda x, n: x * 0.5,
             "iter.1.layer.0.hook_out": lambda x, n: x.flip(-1)}
    with model.hooks(edits):
        fast, reference = _both(model, ids)
    torch.testing.assert_close(fast.logits, reference.logits, rtol=1e-5, atol=1e-5)


def test_noop_hook_on_inference_path_is_bit_identical(model, ids):
    with torch.no_grad():
        plain = model(ids).logits
        with model.hooks({"*": lambda x, name: None}):
            hooked = model(ids).logits
    assert torch.equal(plain, hooked)


def test_padded_batch_on_inference_path_equals_reference(model, ids):
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, :4] = False
    positions = (mask.long().cumsum(1) - 1).clamp_min(0)
    fast, reference = _both(model, ids, attention_mask=mask, position_ids=positions)
    torch.testing.assert_close(fast.logits[1, 4:], reference.logits[1, 4:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["frobenius", "matrix3d"])
def test_preallocated_cache_decoding_equals_full_recomputation(attention, ids):
    # Invariant: a cache that starts small (reserve 1) and grows in place gives the
    # logits of one pass over the whole sequence, on both paths.
    model = tiny_model(attention=attention)
    with torch.no_grad():
        full = model(ids).logits
        for use_inference_path in (True, False):
            model.use_inference_path = use_inference_path
            cache = DecodeCache(reserve=1)
            parts = [model(ids[:, :4], cache=cache).logits]
            parts += [model(ids[:, i:i + 1], cache=cache).logits for i in range(4, 10)]
            torch.testing.assert_close(torch.cat(parts, 1), full, rtol=1e-5, atol=1e-5)
        model.use_inference_path = True


def test_fork_copies_on_write_and_leaves_the_parent_intact(model, ids):
    with torch.no_grad():
        cache = DecodeCache(reserve=8)
        model(ids[:, :5], cache=cache)
        branch = cache.fork()
        other = model(ids[:, 5:7], cache=branch).logits  # a different continuation
        assert branch.kv[(1, 0)][0].data_ptr() != cache.kv[(1, 0)][0].data_ptr()
        mine = model(ids[:, 7:9], cache=cache).logits
        full = model(torch.cat([ids[:, :5], ids[:, 7:9]], 1)).logits[:, 5:]
    torch.testing.assert_close(mine, full, rtol=1e-5, atol=1e-5)
    assert other.shape == mine.shape


def test_cache_under_autograd_concatenates_and_backpropagates(model, ids):
    # Training a CODI model runs through the cache with gradients: no in-place writes.
    cache = DecodeCache(reserve=4)
    out = model(ids[:, :5], cache=cache).logits.sum() + model(ids[:, 5:6], cache=cache).logits.sum()
    out.backward()
    assert model.layers[0].attn.q_proj.A.grad is not None


@pytest.mark.parametrize("attention", ["frobenius", "matrix3d"])
@pytest.mark.parametrize("C", [3, 5])  # few and many queries per prompt (two mix orders)
def test_shared_prefix_decoding_equals_separate_caches(attention, C):
    # Invariant: C continuations of G left-padded prompts decoded as G*C rows of one
    # shared-prefix cache give each row's logits from its own plain cache, also after
    # rows finish and the cache compacts.
    model = tiny_model(attention=attention)
    gen = torch.Generator().manual_seed(3)
    G, Lp, steps = 2, 5, 6
    prompts = torch.randint(0, 256, (G, Lp), generator=gen)
    mask = torch.ones(G, Lp, dtype=torch.bool)
    mask[1, :2] = False
    positions = (mask.long().cumsum(1) - 1).clamp_min(0)
    tokens = torch.randint(0, 256, (G * C, steps), generator=gen)
    keep_after = {2: [0, 1, 3, 4, 5], 3: [0, 3, 4], 4: [4]}  # live rows after step s
    with torch.no_grad():
        prefix = DecodeCache()
        model(prompts, attention_mask=mask, position_ids=positions, cache=prefix)
        shared = SharedPrefixCache(prefix, n_branches=C, capacity=2)
        singles = []
        for r in range(G * C):
            single = DecodeCache()
            g = r // C
            model(prompts[g:g + 1], attention_mask=mask[g:g + 1],
                  position_ids=positions[g:g + 1], cache=single)
            singles.append(single)
        live = list(range(G * C))
        for s in range(steps):
            pos = positions[[r // C for r in live], -1] + 1 + s
            got = model(tokens[live, s:s + 1], position_ids=pos[:, None], cache=shared).logits
            for j, r in enumerate(live):
                want = model(tokens[r:r + 1, s:s + 1], position_ids=pos[j:j + 1, None],
                             cache=singles[r]).logits
                torch.testing.assert_close(got[j:j + 1], want, rtol=1e-5, atol=1e-5)
            if s in keep_after:
                kept = [live.index(r) for r in keep_after[s]]
                shared.keep(kept)
                live = keep_after[s]


def test_static_shared_prefix_cache_equals_the_dynamic_one():
    # Invariant: the fixed-shape variant (for CUDA graphs: whole capacity, device step
    # counter, every row computed) gives the logits of the dynamic cache.
    model = tiny_model()
    gen = torch.Generator().manual_seed(5)
    prompts = torch.randint(0, 256, (2, 4), generator=gen)
    tokens = torch.randint(0, 256, (4, 5), generator=gen)
    with torch.no_grad():
        caches = []
        for static in (False, True):
            prefix = DecodeCache()
            model(prompts, cache=prefix)
            caches.append(SharedPrefixCache(prefix, n_branches=2, capacity=5, static=static))
        for s in range(5):
            pos = torch.full((4, 1), 4 + s)
            dynamic, static = (model(tokens[:, s:s + 1], position_ids=pos, cache=c).logits
                               for c in caches)
            torch.testing.assert_close(static, dynamic, rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="every row"):
        caches[1].keep([0])


def test_prompt_cache_handed_to_shared_decoding_serves_again_but_cannot_grow():
    # Invariant: a shared-prefix cache takes the prompt cache's buffers (no second copy);
    # a second one built from the same prompt cache decodes the same logits, and running
    # more positions through the emptied prompt cache is refused, not silently wrong.
    model = tiny_model()
    gen = torch.Generator().manual_seed(7)
    prompts = torch.randint(0, 256, (2, 4), generator=gen)
    tokens = torch.randint(0, 256, (4, 1), generator=gen)
    with torch.no_grad():
        prefix = DecodeCache(reserve=3)
        model(prompts, cache=prefix)
        first, second = (SharedPrefixCache(prefix, n_branches=2, capacity=2) for _ in range(2))
        assert not prefix.kv  # the buffers moved to the shared parts
        pos = torch.full((4, 1), 4)
        a, b = (model(tokens, position_ids=pos, cache=c).logits for c in (first, second))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        with pytest.raises(AblateError, match="fresh DecodeCache"):
            model(tokens[:2], cache=prefix)


@pytest.mark.parametrize("attention", ["frobenius", "matrix3d"])
def test_cached_decoding_is_bit_identical_on_one_and_two_threads(attention):
    # Invariant: the thread policy runs a job on 1 or 2 threads as the load allows, so a
    # prompt pass and one-token steps through a decode cache (CODI's latent and answer
    # steps) must give the same bits on both: CPU SDPA splits a single query's keys
    # between threads, so attention keeps that call on one.
    from ablate.intra_op import torch_threads

    model = tiny_model(attention=attention)
    gen = torch.Generator().manual_seed(5)
    prompts = torch.randint(0, 256, (3, 40), generator=gen)
    tokens = torch.randint(0, 256, (3, 4), generator=gen)

    def run() -> list[torch.Tensor]:
        with torch.no_grad():
            cache = DecodeCache()
            out = [model(prompts, cache=cache).logits]
            out += [model(tokens[:, s:s + 1], cache=cache).logits for s in range(4)]
        return out

    with torch_threads(1):
        one = run()
    with torch_threads(2):
        two = run()
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)
