"""One prepared check of the CUDA path: records against CPU, bf16 against fp32, throughput
at the research size, and CUDA-graph decoding against eager.

    $ python bench/gpu_check.py                 # on a GPU machine: a few minutes
    $ python bench/gpu_check.py --quick         # anywhere, seconds (CPU against CPU without CUDA)
    $ python bench/gpu_check.py --json out.json # also write every figure

Sections (each prints rows; the JSON holds the same figures):
1. records: ``evaluate`` on the same items on CUDA (float32) and on CPU: the bundled
   multi-probe checkpoint on synthetic items (11 head-input conditions, teacher-forced,
   where it answers some items right) and the research-size model on GSM8K (teacher-forced
   and generative). Pass: correct flags identical, answer log-likelihoods within 1e-4
   relative; generative predictions are reported as a share identical (greedy decoding
   may break a near-tie differently on another device).
2. bf16: the same on CUDA under bf16 autocast against CUDA float32: share of identical
   correct flags, largest relative log-likelihood difference (reported, not judged).
3. throughput at the research size (d = 32, 8 layers, T = 8, byte vocabulary) on GSM8K
   test items from ../shared/data/gsm8k: teacher-forced tokens/s and generative decode
   tokens/s, float32 and bf16.
4. decoding: the evaluation's eager decode steps against the same steps replayed as one
   CUDA graph per step (``SharedPrefixCache(static=True)``): steps/s and identical tokens.

Without CUDA (or with --quick) the same code paths run on CPU at small sizes, comparing
CPU with CPU; the output says so, and the CUDA-only rows read "not measured". It needs
torch, transformers, safetensors, pandas and pyarrow; not tomli_w, datasets or ray.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runs from a plain checkout, without `pip install`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ablate.checkpoint import load_checkpoint  # noqa: E402
from ablate.evaluation import evaluate  # noqa: E402
from ablate.interventions import UNABLATED, expand_conditions  # noqa: E402
from ablate.model import DecodeCache, SharedPrefixCache  # noqa: E402
from ablate.tasks import get_task  # noqa: E402
from ablate.tokenizer import ByteTokenizer  # noqa: E402
from bench.research_size import GSM8K, T, research_model  # noqa: E402

KS = [1, 2, 4, 8, 16]
NOT_MEASURED = "not measured"


def conditions(d: int, n_layers: int) -> list:
    return expand_conditions([{"name": "svd_rank_k", "k": [k for k in KS if k <= d]},
                              {"name": "random_rank_k", "k": [k for k in KS if k < d],
                               "draws": 1}], d=d, n_layers=n_layers)


def compare_records(a, b, what: str) -> dict:
    """Correct flags and log-likelihoods of two record frames of the same evaluation."""
    same_flags = float((a["correct"].to_numpy() == b["correct"].to_numpy()).mean())
    out = {"what": what, "records": len(a), "correct_share": float(a["correct"].mean()),
           "identical_correct_flags": same_flags}
    if a["answer_loglik"].notna().any():
        x, y = a["answer_loglik"].to_numpy(float), b["answer_loglik"].to_numpy(float)
        scale = [max(abs(u), abs(v), 1e-12) for u, v in zip(x, y, strict=True)]
        out["max_rel_loglik_diff"] = max(abs(u - v) / s for u, v, s in zip(x, y, scale,
                                                                           strict=True))
    if a["prediction"].str.len().gt(0).any():
        out["identical_predictions"] = float((a["prediction"].to_numpy()
                                              == b["prediction"].to_numpy()).mean())
    return out


def check_records(device: str, quick: bool) -> list[dict]:
    """Section 1 (float32 on ``device`` against CPU) and 2 (bf16 against float32)."""
    rows = []
    bundled = load_checkpoint(str(ROOT / "checkpoints" / "multiprobe-seed0"))
    synthetic = get_task("synthetic", max_value=5, max_total=10).load(
        "test", limit=8 if quick else 100)
    cfg = bundled.model.config
    runs = [("bundled d=8, synthetic, teacher-forced", bundled.model, bundled.tokenizer,
             synthetic, conditions(cfg.mat_dim, cfg.n_layers),
             dict(task="synthetic", mode="teacher_forced", n_iterations=4))]
    if GSM8K.exists():
        n_layers = 1 if quick else 8
        model = research_model(n_layers=n_layers)
        items = get_task("gsm8k").load("test", path=str(GSM8K), limit=2 if quick else 16)
        tokenizer = ByteTokenizer()
        runs.append((f"research size ({n_layers} layers), GSM8K, teacher-forced", model,
                     tokenizer, items, conditions(32, n_layers),
                     dict(task="gsm8k", mode="teacher_forced", n_iterations=T)))
        runs.append((f"research size ({n_layers} layers), GSM8K, generative", model,
                     tokenizer, items[:2 if quick else 16], conditions(32, n_layers)[:3],
                     dict(task="gsm8k", mode="generative", n_iterations=T,
                          max_new_tokens=4 if quick else 32)))
    for what, model, tokenizer, items, conds, settings in runs:
        common = dict(eval_seed=0, batch_size=16, **settings)
        cpu = evaluate(model, tokenizer, items, conds, device="cpu", **common)
        here = evaluate(model, tokenizer, items, conds, device=device, **common)
        row = compare_records(here, cpu, f"{device} float32 vs cpu float32: {what}")
        flags_ok = row["identical_correct_flags"] == 1.0
        loglik_ok = row.get("max_rel_loglik_diff", 0.0) <= 1e-4
        row["pass"] = flags_ok and loglik_ok
        rows.append(row)
        if device == "cuda":
            bf16 = evaluate(model, tokenizer, items, conds, device=device, precision="bf16",
                            **common)
            rows.append(compare_records(bf16, here, f"cuda bf16 vs cuda float32: {what}"))
        else:
            rows.append({"what": f"bf16 vs float32: {what}", "result": NOT_MEASURED,
                         "why": "bf16 autocast needs CUDA"})
        model.to("cpu")
    return rows


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def check_throughput(device: str, quick: bool) -> list[dict]:
    """Section 3: teacher-forced and generative tokens/s at the research size."""
    if not GSM8K.exists():
        return [{"what": "throughput", "result": NOT_MEASURED, "why": f"no GSM8K at {GSM8K}"}]
    n_layers = 1 if quick else 8
    model = research_model(n_layers=n_layers).to(device)
    tokenizer = ByteTokenizer()
    rows = []
    precisions = ["float32", "bf16"] if device == "cuda" else ["float32"]
    n_tf, n_gen, new = (2, 2, 4) if quick else (256, 64, 64)
    items = get_task("gsm8k").load("test", path=str(GSM8K), limit=max(n_tf, n_gen))
    for precision in precisions:
        settings = dict(task="gsm8k", n_iterations=T, eval_seed=0, device=device,
                        precision=precision)
        tf_items = items[:n_tf]
        evaluate(model, tokenizer, tf_items[:2], [UNABLATED], mode="teacher_forced",
                 batch_size=2, **settings)  # warm-up
        _sync(device)
        start = time.perf_counter()
        frame = evaluate(model, tokenizer, tf_items, [UNABLATED], mode="teacher_forced",
                         batch_size=64 if device == "cuda" else 4, **settings)
        _sync(device)
        seconds = time.perf_counter() - start
        tokens = int((frame["n_prompt_tokens"] + frame["n_target_tokens"]).sum())
        rows.append({"what": f"teacher-forced, {precision}", "tokens_per_s": tokens / seconds,
                     "items": len(tf_items), "seconds": seconds, "n_layers": n_layers})
        start = time.perf_counter()
        frame = evaluate(model, tokenizer, items[:n_gen], [UNABLATED], mode="generative",
                         batch_size=64 if device == "cuda" else 4, max_new_tokens=new,
                         **settings)
        _sync(device)
        seconds = time.perf_counter() - start
        rows.append({"what": f"generative (prompt pass + decode), {precision}",
                     "items": n_gen, "max_new_tokens": new, "seconds": seconds,
                     "items_per_s": n_gen / seconds, "n_layers": n_layers,
                     "stopped_early": int((frame["prediction"].str.len() < new).sum())})
    if device != "cuda":
        rows.append({"what": "bf16 throughput", "result": NOT_MEASURED, "why": "needs CUDA"})
    return rows


def check_graph_decoding(device: str, quick: bool) -> list[dict]:
    """Section 4: eager decode steps against CUDA-graph replays of the same steps."""
    n_layers = 1 if quick else 8
    model = research_model(n_layers=n_layers).to(device)
    B, C, Lp, steps = (2, 2, 16, 4) if quick else (16, 11, 256, 32)
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, 256, (B, Lp), generator=generator).to(device)
    results = {}
    with torch.no_grad():
        for mode in ("eager", "graph"):
            prefix = DecodeCache()
            model(prompts, T, cache=prefix, head=False)
            cache = SharedPrefixCache(prefix, n_branches=C, capacity=steps,
                                      static=mode == "graph")
            tokens = torch.zeros(B * C, 1, dtype=torch.long, device=device)
            pos = torch.zeros(B * C, 1, dtype=torch.long, device=device)

            def step(cache=cache, tokens=tokens, pos=pos) -> torch.Tensor:
                return model(tokens, T, position_ids=pos, cache=cache).logits[:, 0]

            graph, static_logits = None, None
            if mode == "graph" and device == "cuda":
                # One eager step allocates the cache's buffers (an allocation inside the
                # capture would be replayed as a fill); then rewind it and capture a step.
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    step()
                torch.cuda.current_stream().wait_stream(side)
                cache._step.zero_()
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_logits = step()
            _sync(device)
            start = time.perf_counter()
            next_tokens = prompts[:, -1:].repeat_interleave(C, 0)
            out = []
            for s in range(steps):
                tokens.copy_(next_tokens)
                pos.fill_(Lp + s)
                if graph is not None:
                    graph.replay()
                    logits = static_logits
                else:
                    logits = step()
                next_tokens = logits.argmax(-1, keepdim=True)
                out.append(next_tokens.clone())
            _sync(device)
            results[mode] = (time.perf_counter() - start, torch.cat(out, 1).cpu())
    (eager_s, eager_tokens), (graph_s, graph_tokens) = results["eager"], results["graph"]
    captured = device == "cuda"
    what = "CUDA graph replay" if captured else "static cache, eager (no CUDA: not captured)"
    return [{"what": f"decode steps: {what} vs eager dynamic cache",
             "rows": B * C, "steps": steps, "prompt_tokens": Lp, "n_layers": n_layers,
             "eager_steps_per_s": steps / eager_s, "graph_steps_per_s": steps / graph_s,
             "eager_tokens_per_s": B * C * steps / eager_s,
             "speedup": eager_s / graph_s,
             "identical_tokens": float((eager_tokens == graph_tokens).float().mean())}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds on a CPU)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = (torch.cuda.get_device_name(0) if device == "cuda"
            else f"CPU ({platform.processor() or platform.machine()})")
    print(f"device: {name}; torch {torch.__version__}; "
          f"{'CUDA against CPU' if device == 'cuda' else 'no CUDA: CPU against CPU'}"
          f"{' (quick sizes)' if args.quick else ''}")
    torch.set_num_threads(1)  # the CPU references: small matrices run best on one thread
    report = {"device": name, "torch": torch.__version__, "quick": args.quick}
    ok = True
    for section, fn in (("records", check_records), ("throughput", check_throughput),
                        ("decoding", check_graph_decoding)):
        start = time.perf_counter()
        rows = fn(device, args.quick)
        report[section] = rows
        for row in rows:
            ok &= row.get("pass", True)
            print(f"[{section}] " + ", ".join(f"{k}={_fmt(v)}" for k, v in row.items()))
        print(f"[{section}] done in {time.perf_counter() - start:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print("PASS" if ok else "FAIL: see the rows with pass=False")
    return 0 if ok else 1


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
