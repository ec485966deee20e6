"""Peak resident memory of a research-size GSM8K teacher-forced job with 56 conditions.

The job of ``experiments/rank_projection_gsm8k.toml`` (d = 32, 8 layers, T = 8, byte
vocabulary, batch 32, the 56 head-input conditions) evaluates GSM8K test items in
length-sorted batches, longest first, and memory grows with the batch's B·L, so its
first batch sets the peak. This benchmark runs exactly that batch (the 32 longest of the
1319 test items) in a fresh process and reads its peak resident set (VmHWM), next to
the process's size before the batch (torch, the model, the items).

What bounds it, per batch of N = B·L positions (d = 32, float32): the forward's working
set (the state, its next value, queries/keys/values and the attention output: ~6 x N x
4 KiB, the T+1 states are reduced to their ranks as they are produced), the head input
and M(T) at the real positions, and one float64 decomposition of the head input shared
by the 5 SVD conditions (left and right factors, 16 KiB per position); conditions are
evaluated one after another, so their count does not add memory.

ratio = peak resident memory / 2 GiB (target: < 1).

    $ python -m bench.memory [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from bench.research_size import load_note

LIMIT = 2 * 2**30


def _child(n_items: int, n_layers: int) -> None:
    """Evaluate the n longest GSM8K test items as one batch; print memory figures."""
    import torch

    from ablate.evaluation import evaluate
    from ablate.evaluation.teacher_forced import encode_forced
    from ablate.interventions import expand_conditions
    from ablate.tasks import get_task
    from ablate.tokenizer import ByteTokenizer
    from bench.research_size import GSM8K, research_model

    torch.set_num_threads(1)
    model = research_model(n_layers=n_layers)
    tokenizer = ByteTokenizer()
    task = get_task("gsm8k")
    items = task.load("test", path=str(GSM8K))
    lengths = [e.length for e in encode_forced(tokenizer, items, task.text_format, 2048)]
    longest = sorted(range(len(items)), key=lambda i: -lengths[i])[:n_items]
    batch = [items[i] for i in longest]
    ks = [1, 2, 4, 8, 16]
    conditions = expand_conditions([{"name": "svd_rank_k", "k": ks},
                                    {"name": "random_rank_k", "k": ks, "draws": 10}],
                                   d=32, n_layers=n_layers)
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak (VmHWM) restarts from here
    evaluate(model, tokenizer, batch, conditions, task="gsm8k", mode="teacher_forced",
             n_iterations=8, eval_seed=0, batch_size=n_items)
    print(json.dumps({"before": before, "peak": _status("VmHWM"), "items": n_items,
                      "conditions": len(conditions),
                      "tokens": max(lengths[i] for i in longest)}))


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}."""
    n_items, n_layers = (8, 2) if quick else (32, 8)
    out = subprocess.run([sys.executable, "-m", "bench.memory", "--child", str(n_items),
                          str(n_layers)], capture_output=True, text=True, check=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    peak, before = figures["peak"], figures["before"]
    return [{"benchmark": "peak memory, research-size GSM8K teacher-forced job",
             "method": f"first batch ({n_items} longest items, {figures['conditions']} "
                       "conditions)", "baseline": "2 GiB", "ratio": peak / LIMIT,
             "detail": f"peak resident {peak / 2**30:.2f} GiB ({before / 2**30:.2f} GiB before "
                       f"the batch); {n_items} x {figures['tokens']} tokens, {n_layers} layers, "
                       f"d=32, T=8, one thread; {load_note()}; target < 1"}]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
    else:
        from bench.run_all import print_rows

        print_rows(run(quick=args.quick))
