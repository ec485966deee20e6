"""Generative decoding at the research size, one thread: decode steps against their FLOPs,
and many conditions decoded as rows of one batch against one condition.

Rows, measured in one run on GSM8K test questions (zero-shot prompts of the gsm8k task,
batch 16, greedy, byte vocabulary; stop sequences off so every row decodes every step):
* decode steps alone, one condition: the evaluation's decode loop (``_Decoder.decode``:
  model step, effective ranks, head, stop checks) after the prompt pass, against the
  time its FLOPs (torch's FLOP counter over the same steps, attention included) take at
  the bmm rate of the same run (target: <= 3x). Attention over a cache is
  bandwidth-bound: at d = 32 a position's keys and values are 512 KiB per row, so the
  prompt length decides the ratio. A second row sets the same time against the larger
  of that FLOP floor and the bandwidth floor: the bytes of keys and values the model
  calls must read (padded prompts and the tokens so far) at the rate of reading one
  large tensor in the same run (``read_rate``). Both rows are repeated with prompts cut
  to their last 32 tokens;
* 11 head-input conditions (unablated, SVD and random rank-k for k in 1..16) through
  ``evaluate``, against the unablated condition alone (target: <= 3x): they share the
  prompt pass and are decoded as prompts x conditions rows of one batch.

ratio = method time / baseline time (CPU seconds of this process, best of repeats).

    $ python -m bench.decode [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

from ablate.executors.threads import torch_threads
from bench.research_size import (
    D,
    T,
    bmm_rate,
    cpu_and_wall,
    gsm8k_items,
    load_note,
    read_rate,
    research_model,
)

BATCH = 16
KS = [1, 2, 4, 8, 16]


def _prompts(tokenizer, items, steps: int, keep_last: int | None):
    from ablate.evaluation.generative import encode_prompts
    from ablate.tasks import get_task

    prompts = encode_prompts(tokenizer, items, get_task("gsm8k"), few_shot=0, train_items=None,
                             eval_seed=0, max_new_tokens=steps, max_len=2048)
    if keep_last:
        prompts = [dataclasses.replace(p, prompt_ids=p.prompt_ids[-keep_last:]) for p in prompts]
    return [dataclasses.replace(p, stop_sequences=(), max_new_tokens=steps) for p in prompts]


def _decode_rows(model, tokenizer, items, steps: int, keep_last: int | None,
                 repeats: int) -> list[dict]:
    from ablate.evaluation.generative import _Decoder
    from ablate.interventions import UNABLATED

    prompts = _prompts(tokenizer, items, steps, keep_last)
    decoder = _Decoder(model, tokenizer, T, torch.device("cpu"), "float32", eval_seed=0)

    def prefill():
        prefill, states, (rows, cols, last) = decoder.prompt_pass(prompts)
        branch = decoder.branch(prefill, 0, UNABLATED, states[-1][rows, cols], rows, last)
        return prefill, branch

    def decode() -> float:
        prefill_state, branch = prefill()
        cpu, _ = cpu_and_wall(lambda: decoder.decode(prompts, prefill_state, [branch], True))
        return cpu

    with torch.no_grad():
        state, branch = prefill()
        counter = FlopCounterMode(display=False)
        with counter:
            generated = decoder.decode(prompts, state, [branch], True)
        assert all(len(g) == steps for g in generated[0]), "a row stopped early"
        flops = counter.get_total_flops()
        times, rates, bandwidths = [], [bmm_rate()], [read_rate()]
        for _ in range(repeats):
            times.append(decode())
            rates.append(bmm_rate())
            bandwidths.append(read_rate())
    seconds, rate, bandwidth = min(times), max(rates) * 1e9, max(bandwidths) * 1e9
    lengths = [len(p.prompt_ids) for p in prompts]
    # Bytes of keys and values the model calls read: every row's padded prompt (the
    # prompt cache is as long as the longest prompt) and its tokens so far, at every
    # (iteration, layer). The first token comes from the prompt pass: steps - 1 calls.
    position_bytes = 2 * model.config.n_layers * T * D * D * 4
    calls = steps - 1
    read = position_bytes * sum(len(lengths) * (max(lengths) + j + 1) for j in range(calls))
    flop_floor, byte_floor = flops / rate, read / bandwidth
    what = "prompts cut to 32 tokens" if keep_last else "zero-shot GSM8K prompts"
    facts = (f"{steps} steps in {seconds:.2f} CPU s ({seconds / calls * 1e3:.0f} ms per model "
             f"call); prompts {min(lengths)}-{max(lengths)} tokens")
    return [{"benchmark": "greedy decode steps, research size, batch 16",
             "method": f"decode loop ({what})", "baseline": "its FLOPs at the bmm rate",
             "ratio": seconds / flop_floor,
             "detail": f"{facts}; {flops / 1e9:.1f} GFLOP, bmm {rate / 1e9:.1f} GFLOP/s "
                       f"({flop_floor:.2f} s); {load_note()}; target <= 3"},
            {"benchmark": "greedy decode steps, research size, batch 16",
             "method": f"decode loop ({what})",
             "baseline": "max(FLOPs at the bmm rate, bytes read at the read rate)",
             "ratio": seconds / max(flop_floor, byte_floor),
             "detail": f"{facts}; {read / calls / 1e9:.2f} GB of keys/values read per call, "
                       f"{read / 1e9:.1f} GB at {bandwidth / 1e9:.1f} GB/s ({byte_floor:.2f} s) "
                       f"vs {flop_floor:.2f} s of FLOPs; {load_note()}"}]


def _conditions_row(model, tokenizer, items, steps: int, repeats: int) -> dict:
    from ablate.evaluation import evaluate
    from ablate.interventions import UNABLATED, expand_conditions

    conditions = expand_conditions([{"name": "svd_rank_k", "k": KS},
                                    {"name": "random_rank_k", "k": KS, "draws": 1}],
                                   d=D, n_layers=model.config.n_layers)
    assert len(conditions) == 11
    settings = dict(task="gsm8k", mode="generative", n_iterations=T, eval_seed=0,
                    batch_size=BATCH, max_new_tokens=steps)
    times = {"one": [], "eleven": []}
    with torch.no_grad():
        for _ in range(repeats):
            times["one"].append(cpu_and_wall(lambda: evaluate(
                model, tokenizer, items, [UNABLATED], **settings))[0])
            times["eleven"].append(cpu_and_wall(lambda: evaluate(
                model, tokenizer, items, conditions, **settings))[0])
    one, eleven = min(times["one"]), min(times["eleven"])
    return {"benchmark": "11 head-input conditions, generative",
            "method": "evaluate, 11 conditions",
            "baseline": "evaluate, unablated alone", "ratio": eleven / one,
            "detail": f"{eleven:.1f} vs {one:.1f} CPU s; {len(items)} GSM8K prompts (zero-shot), "
                      f"batch {BATCH}, up to {steps} new tokens, d={D}, "
                      f"{model.config.n_layers} layers, T={T}; {load_note()}; target <= 3"}


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}."""
    from ablate.tokenizer import ByteTokenizer

    with torch_threads(1):
        steps, repeats = (4, 1) if quick else (16, 2)
        model = research_model(n_layers=2) if quick else research_model()
        tokenizer = ByteTokenizer()
        items = gsm8k_items(4 if quick else BATCH)
        return [
            *_decode_rows(model, tokenizer, items, steps, None, repeats),
            *_decode_rows(model, tokenizer, items, steps, 32, repeats),
            _conditions_row(model, tokenizer, items, steps, repeats),
        ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    from bench.run_all import print_rows

    print_rows(run(quick=parser.parse_args().quick))
