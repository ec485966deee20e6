"""Overhead of named hook points and of rank tracking, as ratios measured in one run.

Baselines: a forward pass with no hook points at all (the same arithmetic written as a
bare loop), and per-iteration capture through plain PyTorch forward hooks on the blocks.

    $ python -m bench.hooks
"""

from __future__ import annotations

import time

import torch

from ablate.model import MatrixThinker, MatrixThinkerConfig


def _bare_forward(model: MatrixThinker, ids: torch.Tensor, T: int) -> torch.Tensor:
    """The model's arithmetic with no hook points: the baseline for hook overhead."""
    M = model.embed(ids)
    for _ in range(T):
        for block in model.layers:
            M = block.think(block.attn(M))
    return model.head(model.final_norm(M))


def _best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _model(d: int = 32, layers: int = 8, vocab: int = 256) -> MatrixThinker:
    torch.manual_seed(0)
    config = MatrixThinkerConfig(mat_dim=d, n_layers=layers, n_heads=8, n_probes=d,
                                 vocab_size=vocab, max_len=512, dropout=0.0)
    return MatrixThinker(config).eval()


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}; ratio = method time / baseline."""
    from ablate.rank import effective_rank

    torch.manual_seed(0)
    model = _model(layers=2 if quick else 8)
    # The bare loop is the reference blocks' arithmetic, so the model runs them too (the
    # evaluation forward, ablate.model.inference, is measured by bench.forward).
    model.use_inference_path = False
    T = 8
    B, L = (2, 64) if quick else (4, 128)
    ids = torch.randint(0, 256, (B, L))
    repeats = 2 if quick else 5
    rows = []
    with torch.no_grad():
        bare = _best_of(lambda: _bare_forward(model, ids, T), repeats)
        plain = _best_of(lambda: model(ids, T), repeats)
        rows.append({"benchmark": "hook points, nothing attached", "method": "model(ids)",
                     "baseline": "bare loop without hook points", "ratio": plain / bare,
                     "detail": f"d=32 NL={len(model.layers)} T={T} B={B} L={L}; target < 1.02"})

        def named_capture() -> list[torch.Tensor]:
            saved: list[torch.Tensor] = []
            with model.hooks({"iter.*.hook_out": lambda x, n: saved.append(x)}):
                model(ids, T)
            return saved

        def forward_hook_capture() -> list[torch.Tensor]:
            saved: list[torch.Tensor] = []
            last = model.layers[-1]
            handle = last.think.register_forward_hook(lambda mod, inp, out: saved.append(out))
            try:
                model(ids, T)
            finally:
                handle.remove()
            return saved

        named = _best_of(named_capture, repeats)
        plain_hooks = _best_of(forward_hook_capture, repeats)
        rows.append({"benchmark": "capture every iteration's state", "method": "named hooks",
                     "baseline": "torch forward hooks", "ratio": named / plain_hooks,
                     "detail": "both capture M(t) for t=1..T"})

        def with_ranks() -> torch.Tensor:
            out = model(ids, T, return_states=True)
            return effective_rank(torch.stack(out.states))  # every position, every iteration

        tracked = _best_of(with_ranks, repeats)
        rows.append({"benchmark": "rank tracking, every position and iteration",
                     "method": "forward + effective_rank(M(0..T))", "baseline": "forward",
                     "ratio": tracked / plain, "detail": f"{(T + 1) * B * L} matrices of 32x32; "
                     "target < 1.10"})
    return rows


if __name__ == "__main__":
    from bench.run_all import print_rows

    print_rows(run())
