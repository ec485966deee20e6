"""Teacher-forced cost of many head-input conditions with one shared backbone pass.

Rows compare, in the same run, on the same research-size model and GSM8K test items
(teacher-forced, T = 8, one thread):
* the 11 conditions of the quickstart grid (unablated + svd_rank_k and random_rank_k at
  head_input for k in 1, 2, 4, 8, 16, one draw) through ``evaluate``, against one
  evaluation of the unablated condition alone;
* the 56 conditions of ``experiments/rank_projection_gsm8k.toml`` (5 SVD, 5 k x 10 random
  draws, unablated), against the same single evaluation (target: <= 1.3x);
* with --quick also the 11 conditions re-running the hooked model per condition
  (``shared_backbone=False``, the naive way), against the same single evaluation.

Every condition's records include the effective rank of its head input at every
position; a rank-k cut takes it from the cut's known spectrum (``BackboneEnds.
head_input_erank``) instead of decomposing the cut matrices again.

ratio = method CPU time / baseline CPU time (best of interleaved repeats).

    $ python -m bench.conditions [--quick]   # or: python -m bench.run_all --only conditions
"""

from __future__ import annotations

import argparse

from ablate.evaluation import evaluate
from ablate.executors.threads import torch_threads
from ablate.interventions import UNABLATED, expand_conditions
from ablate.tokenizer import ByteTokenizer
from bench.research_size import D, T, cpu_and_wall, gsm8k_items, load_note, research_model

KS = [1, 2, 4, 8, 16]


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}; ratio = method time / baseline."""
    with torch_threads(1):
        return _run(quick)


def _run(quick: bool) -> list[dict]:
    n_layers, n_items, repeats = (2, 2, 1) if quick else (8, 8, 2)
    model = research_model(n_layers=n_layers)
    tokenizer = ByteTokenizer()
    items = gsm8k_items(n_items)
    eleven = expand_conditions(
        [{"name": "svd_rank_k", "k": KS}, {"name": "random_rank_k", "k": KS, "draws": 1}],
        d=D, n_layers=n_layers)
    fifty_six = expand_conditions(
        [{"name": "svd_rank_k", "k": KS}, {"name": "random_rank_k", "k": KS, "draws": 10}],
        d=D, n_layers=n_layers)
    assert (len(eleven), len(fifty_six)) == (11, 56)
    settings = dict(task="gsm8k", mode="teacher_forced", n_iterations=T, eval_seed=0,
                    batch_size=n_items)
    methods = {
        "single": lambda: evaluate(model, tokenizer, items, [UNABLATED], **settings),
        "eleven": lambda: evaluate(model, tokenizer, items, eleven, **settings),
        "fifty_six": lambda: evaluate(model, tokenizer, items, fifty_six, **settings),
    }
    methods["single"]()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):  # interleaved, so load drifts hit every method alike
        for name, method in methods.items():
            times[name].append(cpu_and_wall(method)[0])
    best = {name: min(values) for name, values in times.items()}
    tokens = sum(len(tokenizer.encode(f"Question: {i.question}\nAnswer: {i.solution}"))
                 for i in items)
    detail = (f"d={D}, {n_layers} layers, T={T}, {n_items} GSM8K items (~{tokens} tokens), "
              f"one thread, best of {repeats}; {load_note()}")

    def row(method: str, name: str, target: str) -> dict:
        return {"benchmark": "head-input conditions, teacher-forced", "method": method,
                "baseline": "unablated alone", "ratio": best[name] / best["single"],
                "detail": f"{best[name]:.1f} vs {best['single']:.1f} CPU s; {detail}{target}"}

    rows = [row("11 conditions, shared pass", "eleven", ""),
            row("56 conditions, shared pass", "fifty_six", "; target <= 1.3")]
    if quick:
        naive = cpu_and_wall(lambda: evaluate(model, tokenizer, items, eleven,
                                              shared_backbone=False, **settings))[0]
        rows.append({"benchmark": "head-input conditions, teacher-forced",
                     "method": "11 conditions, hooked pass per condition (naive)",
                     "baseline": "unablated alone", "ratio": naive / best["single"],
                     "detail": f"{naive:.1f} vs {best['single']:.1f} CPU s; {detail}"})
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    from bench.run_all import print_rows

    print_rows(run(quick=parser.parse_args().quick))
