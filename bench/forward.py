"""Teacher-forced forward at the research size, one thread: throughput against torch.bmm.

Rows, measured in one run on the same batch of GSM8K test items (right-padded, as the
teacher-forced evaluation runs them, ``return_states=True, head=False``):
* the evaluation forward (``ablate.model.inference``) against the time its FLOPs take at
  the bmm rate of the same run (target: >= 0.8 of the bmm rate);
* the same with attention's FLOPs counted too (torch's FLOP counter does not count the
  fused CPU attention kernel; its causal FLOPs, 4·H·h·d per query-key pair, are added);
* the evaluation forward against the reference blocks (the training code path) on the
  same batch: the speed-up of the inference path;
* how far attention can go: causal attention alone at the forward's shapes (one
  (t, layer): queries, keys and values (B, H, L, h·d)) as the forward runs it (fused CPU
  SDPA), and its two matrix products alone (``q kᵀ`` and ``w v`` over blocks of 64
  queries, keys up to the block's end: no mask, no softmax), each against the bmm rate,
  counting the causal FLOPs. The products alone bound what any eager formulation of
  attention reaches, and attention is most of a long sequence's FLOPs.

ratio = (FLOPs / bmm rate) / time, i.e. the share of the bmm rate reached (higher is
better), except the third row: reference time / inference time.
Times are CPU seconds of this process (steadier than wall time when other jobs share the
cores), best of interleaved repeats.

    $ python -m bench.forward [--quick]
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ablate.executors.threads import torch_threads
from bench.research_size import (
    N_HEADS,
    D,
    T,
    best_of,
    bmm_rate,
    cpu_and_wall,
    gsm8k_items,
    load_note,
    research_model,
)


def _batch(n_items: int) -> tuple[torch.Tensor, list[int]]:
    from ablate.evaluation.batching import right_pad
    from ablate.tasks import get_task
    from ablate.tasks.prompts import teacher_forced_example
    from ablate.tokenizer import ByteTokenizer

    tokenizer = ByteTokenizer()
    text_format = get_task("gsm8k").text_format
    sequences = []
    for item in gsm8k_items(n_items):
        example = teacher_forced_example(item, text_format)
        sequences.append(tokenizer.encode(example.prompt + example.target))
    return right_pad(sequences, torch.device("cpu")), [len(s) for s in sequences]


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}."""
    with torch_threads(1):
        return _run(quick)


def _run(quick: bool) -> list[dict]:
    n_layers = 2 if quick else 8
    n_items, repeats = (2, 1) if quick else (8, 2)
    model = research_model(n_layers=n_layers)
    ids, lengths = _batch(n_items)
    B, L = ids.shape
    tokens = sum(lengths)

    def forward() -> object:
        return model(ids, T, return_states=True, head=False)

    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            forward()
        flops = counter.get_total_flops()
        attention = _causal_flops(B, L) * T * n_layers
        times: dict[str, list[float]] = {"inference": [], "reference": [], "bmm": []}
        for repeat in range(repeats):  # interleaved, so load drifts hit every method
            times["bmm"].append(bmm_rate())
            times["inference"].append(best_of(forward, 1, clock="cpu"))
            if repeat == 0:  # the reference path is slow: once
                model.use_inference_path = False
                times["reference"].append(cpu_and_wall(forward)[0])
                model.use_inference_path = True
        times["bmm"].append(bmm_rate())
        attention_times = _attention_alone(B, L, repeats)
        times["bmm"].append(bmm_rate())
    rate = max(times["bmm"]) * 1e9
    inference, reference = min(times["inference"]), min(times["reference"])
    shape = (f"d={D}, {n_layers} layers, T={T}, {B} GSM8K items x {L} tokens (padded; "
             f"{tokens} real), one thread; bmm {rate / 1e9:.1f} GFLOP/s; {load_note()}")
    return [
        {"benchmark": "teacher-forced forward, research size", "method": "inference path",
         "baseline": "its FLOPs at the bmm rate", "ratio": flops / rate / inference,
         "detail": f"{tokens / inference:.0f} tokens/s, {flops / inference / 1e9:.1f} GFLOP/s "
                   f"({flops / (B * L) / 1e6:.1f} MFLOP/token counted); {shape}; "
                   "target >= 0.8"},
        {"benchmark": "teacher-forced forward, research size",
         "method": "inference path, attention FLOPs counted",
         "baseline": "its FLOPs at the bmm rate", "ratio": (flops + attention) / rate / inference,
         "detail": f"{(flops + attention) / inference / 1e9:.1f} GFLOP/s with "
                   f"{attention / 1e9:.0f} GFLOP of causal attention added"},
        {"benchmark": "teacher-forced forward, research size", "method": "inference path",
         "baseline": "reference blocks (training path)", "ratio": reference / inference,
         "detail": f"speed-up; {inference:.1f} vs {reference:.1f} CPU s"},
        *_attention_rows(attention_times, B, L, rate),
    ]


QUERY_BLOCK = 64


def _causal_flops(B: int, L: int) -> float:
    """FLOPs of one (t, layer)'s causal attention: 4·H·h·d per query-key pair."""
    return 4 * N_HEADS * (D // N_HEADS) * D * B * L * (L + 1) / 2


def _attention_alone(B: int, L: int, repeats: int) -> dict[str, float]:
    """CPU seconds of one (t, layer)'s causal attention at the forward's shapes: fused
    SDPA as the forward runs it, and its two matrix products alone (best of repeats)."""
    H, width = N_HEADS, D * D // N_HEADS  # (B, H, L, h·d)
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, L, width, generator=generator) for _ in range(3))
    out = torch.empty_like(q)

    def fused() -> None:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def products() -> None:
        for lo in range(0, L, QUERY_BLOCK):
            hi = min(lo + QUERY_BLOCK, L)
            w = torch.matmul(q[:, :, lo:hi], k[:, :, :hi].mT)  # scores as weights
            torch.matmul(w, v[:, :, :hi], out=out[:, :, lo:hi])

    return {name: best_of(fn, max(repeats, 2), clock="cpu")
            for name, fn in (("fused", fused), ("products", products))}


def _attention_rows(times: dict[str, float], B: int, L: int, rate: float) -> list[dict]:
    flops = _causal_flops(B, L)
    blocks = math.ceil(L / QUERY_BLOCK)
    rows = []
    for name, method, how in (
            ("fused", "causal attention alone (fused SDPA)", "as the forward runs it"),
            ("products", "its two matrix products alone",
             f"q kᵀ and w v over {blocks} blocks of {QUERY_BLOCK} queries; no mask or "
             "softmax: a bound for any attention built on these products")):
        rows.append({"benchmark": "teacher-forced forward, research size", "method": method,
                     "baseline": "its causal FLOPs at the bmm rate",
                     "ratio": flops / rate / times[name],
                     "detail": f"{flops / times[name] / 1e9:.1f} GFLOP/s; {how}; one "
                               f"(t, layer) of ({B}, {N_HEADS}, {L}, {D * D // N_HEADS}) "
                               "queries, keys and values"})
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    from bench.run_all import print_rows

    print_rows(run(quick=parser.parse_args().quick))
