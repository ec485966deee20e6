"""The default thread setting against the best of one thread and all threads.

For two workloads, each timed in wall seconds with 1 thread, with every core's thread
(torch's own default) and with the default of ``ablate.executors.threads`` (what
``ablate run`` and ``ablate codi study`` use), on an otherwise unchanged machine and again
while a competing process keeps one core busy (a pure-Python loop, as another job on a
shared machine would):
* the quickstart: the bundled d = 8 checkpoints' jobs (``run_job``, 30 items, 17
  conditions, teacher-forced);
* the research size: a teacher-forced forward of 2 GSM8K items at d = 32, 8 layers, T = 8.

ratio = default time / min(1-thread time, all-threads time) (target: <= 1.1).
The three settings run interleaved, best of repeats.

    $ python -m bench.threads [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from collections.abc import Callable

import torch

from ablate.executors.threads import torch_threads
from bench.research_size import ROOT, T, gsm8k_items, load_note, research_model


def _spin() -> None:
    while True:
        pass


def _wall(fn: Callable[[], object], threads: int) -> float:
    with torch_threads(threads):
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def _quickstart(n_items: int) -> tuple[Callable[[], object], int]:
    from ablate.executors import run_job
    from ablate.executors.jobs import _checkpoint
    from ablate.executors.threads import available_cores, job_threads, model_width
    from ablate.experiment import load_experiment
    from ablate.grid import expand_jobs

    experiment = load_experiment(ROOT / "experiments" / "quickstart.toml").resolve(limit=n_items)
    jobs = expand_jobs(experiment)[:2]
    model = _checkpoint(jobs[0].checkpoint.path, jobs[0].checkpoint.overrides).model
    default = job_threads(model_width(model), available_cores())

    def work() -> None:
        for job in jobs:  # threads=torch's current setting: the benchmark sets it
            run_job(job, threads=torch.get_num_threads())

    return work, default


def _research(n_items: int, n_layers: int) -> tuple[Callable[[], object], int]:
    from ablate.evaluation.batching import right_pad
    from ablate.executors.threads import available_cores, job_threads, model_width
    from ablate.tasks import get_task
    from ablate.tasks.prompts import teacher_forced_example
    from ablate.tokenizer import ByteTokenizer

    model = research_model(n_layers=n_layers)
    tokenizer, text_format = ByteTokenizer(), get_task("gsm8k").text_format
    sequences = []
    for item in gsm8k_items(n_items):
        example = teacher_forced_example(item, text_format)
        sequences.append(tokenizer.encode(example.prompt + example.target))
    ids = right_pad(sequences, torch.device("cpu"))

    def work() -> None:
        with torch.no_grad():
            model(ids, T, return_states=True, head=False)

    return work, job_threads(model_width(model), available_cores())


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}."""
    everything = os.cpu_count() or 1
    repeats = 1 if quick else 3
    workloads = {
        "quickstart (2 jobs, d=8)": _quickstart(10 if quick else 30),
        "research-size forward (d=32)": _research(1 if quick else 2, 2 if quick else 8),
    }
    rows = []
    for busy in (False, True):
        spinner = None
        if busy:
            spinner = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
            spinner.start()
            time.sleep(0.5)
        try:
            for name, (work, default) in workloads.items():
                work()  # warm-up
                settings = {"one": 1, "all": everything, "default": default}
                times: dict[str, list[float]] = {key: [] for key in settings}
                for _ in range(repeats):
                    for key, threads in settings.items():
                        times[key].append(_wall(work, threads))
                best = {key: min(values) for key, values in times.items()}
                baseline = min(best["one"], best["all"])
                rows.append({
                    "benchmark": f"thread default, {name}",
                    "method": f"default ({default} thread{'s' if default > 1 else ''})",
                    "baseline": "best of 1 thread and all threads",
                    "ratio": best["default"] / baseline,
                    "detail": f"{'with' if busy else 'without'} a competing busy process; "
                              f"1 thread {best['one']:.2f} s, {everything} threads "
                              f"{best['all']:.2f} s, default {best['default']:.2f} s (wall, "
                              f"best of {repeats}); {load_note()}; target <= 1.1"})
        finally:
            if spinner is not None:
                spinner.terminate()
                spinner.join()
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    from bench.run_all import print_rows

    print_rows(run(quick=parser.parse_args().quick))
