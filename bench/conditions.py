"""Speed of evaluating 11 head-input conditions with one shared backbone pass per batch.

Rows compare, in the same run, on the same model and items (teacher-forced, T = 8):
* the 11 conditions (unablated + svd_rank_k and random_rank_k at head_input for
  k in 1, 2, 4, 8, 16, one draw) through ``evaluate``'s shared backbone pass, against one
  evaluation of the unablated condition alone (target: below 1.5x);
* the same 11 conditions re-running the hooked model per condition
  (``shared_backbone=False``, the naive way), against the same single evaluation;
* shared against naive (the speed-up of sharing).

The model is a randomly initialised Matrix Thinker with d = 32, T = 8 and a byte
vocabulary (8 layers; 2 with --quick). ratio = method wall time / baseline wall time:
medians of interleaved repeats for the single and shared runs; the naive run (~11 single
evaluations) runs once, between them. The detail adds the CPU-time ratio, steadier when
other processes share the machine.
The thread count is torch's (set OMP_NUM_THREADS=1 on a busy machine).

    $ python -m bench.conditions          # or: python -m bench.run_all --only conditions
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from ablate.evaluation import evaluate
from ablate.interventions import UNABLATED, expand_conditions
from ablate.model import MatrixThinker, MatrixThinkerConfig
from ablate.tasks import SyntheticTask
from ablate.tokenizer import ByteTokenizer

D = 32
T = 8
KS = [1, 2, 4, 8, 16]


def _seconds(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time is less sensitive to a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _row(method: str, baseline: str, t: dict, a: str, b: str, detail: str) -> dict:
    (wall_a, cpu_a), (wall_b, cpu_b) = t[a], t[b]
    return {"benchmark": "11 head-input conditions, teacher-forced", "method": method,
            "baseline": baseline, "ratio": wall_a / wall_b,
            "detail": f"{wall_a:.2f} vs {wall_b:.2f} s wall, CPU-time ratio "
                      f"{cpu_a / cpu_b:.3f}; {detail}"}


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}; ratio = method time / baseline."""
    n_layers, n_items, repeats = (2, 3, 1) if quick else (8, 2, 3)
    torch.manual_seed(0)
    config = MatrixThinkerConfig(mat_dim=D, n_layers=n_layers, n_heads=8, n_probes=D,
                                 vocab_size=259, max_len=512, dropout=0.0, n_iterations=T)
    model = MatrixThinker(config).eval()
    tokenizer = ByteTokenizer(("<pad>", "<bot>", "<eot>"))
    items = SyntheticTask(max_depth=4).load("test", limit=n_items)
    conditions = expand_conditions(
        [{"name": "svd_rank_k", "k": KS}, {"name": "random_rank_k", "k": KS, "draws": 1}],
        d=D, n_layers=n_layers)
    assert len(conditions) == 11
    settings = dict(task="synthetic", mode="teacher_forced", n_iterations=T, eval_seed=0,
                    batch_size=n_items)

    def single() -> object:
        return evaluate(model, tokenizer, items, [UNABLATED], **settings)

    def shared() -> object:
        return evaluate(model, tokenizer, items, conditions, **settings)

    def naive() -> object:
        return evaluate(model, tokenizer, items, conditions, shared_backbone=False, **settings)

    single()  # warm-up: first calls allocate and load kernels
    times: dict[str, list[tuple[float, float]]] = {"single": [], "shared": [], "naive": []}
    for repeat in range(repeats):
        for name, fn in (("single", single), ("shared", shared)):
            times[name].append(_seconds(fn))
        if repeat == repeats // 2:  # once, mid-run, so load drifts hit every method alike
            times["naive"].append(_seconds(naive))
    t = {name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
         for name, values in times.items()}
    n_tokens = sum(len(tokenizer.encode(f"Question: {i.question}\nAnswer: {i.solution}"))
                   for i in items)
    detail = (f"d={D}, {n_layers} layers, T={T}, {n_items} items (~{n_tokens} tokens), "
              f"threads {torch.get_num_threads()}, {repeats} repeat(s)")
    speedup = t["naive"][0] / t["shared"][0]
    return [
        _row("shared backbone pass (evaluate)", "one unablated evaluation", t, "shared",
             "single", detail),
        _row("hooked pass per condition (naive)", "one unablated evaluation", t, "naive",
             "single", detail),
        _row("shared backbone pass (evaluate)", "hooked pass per condition (naive)", t,
             "shared", "naive", f"speed-up {speedup:.1f}x"),
    ]

if __name__ == "__main__":
    from bench.run_all import print_rows

    print_rows(run())
