"""The default thread setting against the best of one thread and all threads.

For two workloads, each timed in wall seconds with 1 thread, with every core's thread
(torch's own default) and with the default of ``ablate.executors.threads`` (what
``ablate run`` and ``ablate codi study`` use: the cores other processes leave idle,
decided inside the timed run, as a job does), on an otherwise unchanged machine and again
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

from ablate.executors import threads as policy
from ablate.executors.threads import torch_threads
from bench.research_size import ROOT, T, gsm8k_items, load_note, research_model


def _spin() -> None:
    while True:
        pass


def _wall(fn: Callable[[int | None], object], threads: int | None) -> float:
    """Wall seconds of fn(threads) under ``threads`` (None: the policy decides inside)."""
    with torch_threads(threads or torch.get_num_threads()):
        start = time.perf_counter()
        fn(threads)
        return time.perf_counter() - start


def _quickstart(n_items: int) -> Callable[[int | None], object]:
    from ablate.executors import run_job
    from ablate.experiment import load_experiment
    from ablate.grid import expand_jobs

    experiment = load_experiment(ROOT / "experiments" / "quickstart.toml").resolve(limit=n_items)
    jobs = expand_jobs(experiment)[:2]

    def work(threads: int | None) -> None:
        for job in jobs:  # None: run_job's own policy (decided per job and batch)
            run_job(job, threads=threads)

    return work


def _research(n_items: int, n_layers: int) -> Callable[[int | None], object]:
    from ablate.evaluation.batching import right_pad
    from ablate.executors.threads import available_cores, job_threads
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

    def work(threads: int | None) -> None:
        with torch.no_grad(), torch_threads(threads or job_threads(available_cores())):
            model(ids, T, return_states=True, head=False)

    return work


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
            for name, work in workloads.items():
                work(1)  # warm-up
                settings = {"one": 1, "all": everything, "default": None}
                times: dict[str, list[float]] = {key: [] for key in settings}
                chosen: list[int] = []  # the policy's last decision in each default run
                for _ in range(repeats):
                    for key, threads in settings.items():
                        times[key].append(_wall(work, threads))
                        if threads is None:
                            chosen.append(min(policy.DEFAULT_MAX, policy.free_cores.last or 1))
                best = {key: min(values) for key, values in times.items()}
                baseline = min(best["one"], best["all"])
                rows.append({
                    "benchmark": f"thread default, {name}",
                    "method": "default (idle cores, decided in the run)",
                    "baseline": "best of 1 thread and all threads",
                    "ratio": best["default"] / baseline,
                    "detail": f"{'with' if busy else 'without'} a competing busy process; "
                              f"1 thread {best['one']:.2f} s, {everything} threads "
                              f"{best['all']:.2f} s, default {best['default']:.2f} s "
                              f"(chose {'/'.join(map(str, chosen))} threads) (wall, "
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
