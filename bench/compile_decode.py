"""Does ``torch.compile`` pay in the decode loop? The thinking layer compiled vs eager.

The thinking layer is the largest per-position step of a decode call (~30 elementwise
passes and 8 matrix products on 16 matrices per block, T·NL = 64 blocks per call) and
its shapes are fixed while no row finishes, so it is the part a compiler could fuse
without recompiling at every step (attention over the growing cache changes shape at
every step). Measured in one run at the research size, batch 16, one thread, prompts
cut to 32 tokens, 16 steps:

* compiled (``torch.compile(_think, dynamic=False)``, after its first call) against
  eager: decode-loop CPU seconds, best of repeats (ratio < 1: the compiled one is faster);
* the compile cost: wall seconds of the first compiled decode beyond an eager one, and
  the number of decode calls the steady gain needs to pay it back;
* the thinking layer alone on 16 matrices, compiled as one graph (``fullgraph=True``,
  its block's weights closed over as constants: the most a compiler is given) against
  eager, CPU microseconds per call: what the compiler's fusion saves.

If compilation fails (no C compiler, an unsupported platform) the row says so.
This is a measurement for a decision, not a shipped option (bench/README.md, issue 13).

    $ python -m bench.compile_decode [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.research_size import T, cpu_and_wall, gsm8k_items, load_note, research_model


def run(quick: bool = False) -> list[dict]:
    from ablate.evaluation.generative import _Decoder
    from ablate.interventions import UNABLATED
    from ablate.model import inference
    from ablate.tokenizer import ByteTokenizer
    from bench.decode import _prompts

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    steps, repeats = (4, 1) if quick else (16, 3)
    model = research_model(n_layers=2) if quick else research_model()
    tokenizer = ByteTokenizer()
    prompts = _prompts(tokenizer, gsm8k_items(4 if quick else 16), steps, 32)
    decoder = _Decoder(model, tokenizer, T, torch.device("cpu"), "float32", eval_seed=0)

    def decode() -> tuple[float, float]:
        """(CPU s of the decode loop, wall s of the prompt pass and the loop)."""
        start = time.perf_counter()
        prefill, states, (rows, cols, last) = decoder.prompt_pass(prompts)
        branch = decoder.branch(prefill, 0, UNABLATED, states[-1][rows, cols], rows, last)
        del states
        cpu, _ = cpu_and_wall(lambda: decoder.decode(prompts, prefill, [branch], True))
        return cpu, time.perf_counter() - start

    eager_think = inference._think
    try:
        with torch.no_grad():
            decode()
            eager = [decode() for _ in range(repeats)]
            inference._think = torch.compile(eager_think, dynamic=False)
            try:
                first = decode()
            except Exception as error:  # the compiler's own failure, whatever it is
                line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                return [{"benchmark": "torch.compile of the thinking layer, decode loop",
                         "method": "compiled", "baseline": "eager", "ratio": float("nan"),
                         "detail": f"compilation failed ({type(error).__name__}: {line})"}]
            compiled = [decode() for _ in range(repeats)]
    finally:
        inference._think = eager_think
        torch.set_num_threads(threads)
    calls = steps - 1
    alone = _alone(model, 3000 if not quick else 200)
    eager_cpu, compiled_cpu = min(c for c, _ in eager), min(c for c, _ in compiled)
    compile_wall = first[1] - min(w for _, w in eager)  # the first call compiles
    gain = (eager_cpu - compiled_cpu) / calls  # CPU s saved per decode call
    payback = f"{compile_wall / gain:.0f} decode calls to pay it back" if gain > 0 else \
        "no steady gain to pay it back"
    return [{"benchmark": "torch.compile of the thinking layer, decode loop",
             "method": "compiled (after its first call)", "baseline": "eager",
             "ratio": compiled_cpu / eager_cpu,
             "detail": f"{compiled_cpu / calls * 1e3:.1f} vs {eager_cpu / calls * 1e3:.1f} ms "
                       f"per model call; compiling cost {compile_wall:.1f} s wall, {payback}; "
                       f"batch {len(prompts)}, prompts cut to 32 tokens, {steps} steps; "
                       f"{load_note()}"}, alone]


def _alone(model, calls: int) -> dict:
    """The thinking layer alone, one graph compiled vs eager (one thread)."""
    from ablate.model import inference

    weights = inference._BlockWeights(model.layers[0])
    M = torch.randn(model.config.mat_dim, 16, model.config.mat_dim,
                    generator=torch.Generator().manual_seed(0))

    def eager() -> torch.Tensor:
        return inference._think(weights, M)

    def per_call(fn) -> float:
        for _ in range(20):
            fn()
        start = time.process_time()
        for _ in range(calls):
            fn()
        return (time.process_time() - start) / calls

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            compiled = torch.compile(eager, dynamic=False, fullgraph=True)
            start = time.perf_counter()
            compiled()
            compile_wall = time.perf_counter() - start
            times = {"eager": [], "compiled": []}
            for _ in range(2):  # interleaved
                times["eager"].append(per_call(eager))
                times["compiled"].append(per_call(compiled))
            difference = float((compiled() - eager()).abs().max())
    except Exception as error:  # the compiler's own failure, whatever it is
        return {"benchmark": "torch.compile of the thinking layer alone",
                "method": "one graph", "baseline": "eager", "ratio": float("nan"),
                "detail": f"compilation failed ({type(error).__name__})"}
    finally:
        torch.set_num_threads(threads)
    compiled_s, eager_s = min(times["compiled"]), min(times["eager"])
    return {"benchmark": "torch.compile of the thinking layer alone",
            "method": "one graph (fullgraph, weights as constants)", "baseline": "eager",
            "ratio": compiled_s / eager_s,
            "detail": f"{compiled_s * 1e6:.0f} vs {eager_s * 1e6:.0f} us per call on 16 "
                      f"matrices, one thread; {compile_wall:.1f} s to compile (less with "
                      f"inductor's on-disk cache warm); largest difference {difference:.1e}; "
                      f"{load_note()}"}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    from bench.run_all import print_rows

    print_rows(run(quick=parser.parse_args().quick))
