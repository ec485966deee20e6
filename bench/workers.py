"""Jobs side by side: 2 workers against 1 on a CPU-bound sweep, against what 2 plain
processes reach on this machine at the same moment.

Every job evaluates a seeded d = 16 model (4 layers) on synthetic items under several
rank ablations on 1 torch thread (``--threads 1``), so a worker keeps one core busy and
the rows measure jobs side by side, not threads. Rows, measured in one run:
* the process executor (``ablate run --workers 2``): 2 workers against 1 (speed-up);
* the machine's ceiling: the same 2-against-1 comparison for a pure-Python loop in plain
  spawned processes (a shared or throttled machine caps every parallel speed-up below 2);
* the executor's speed-up as a share of that ceiling (target: >= 0.9);
* 2 workers against the default run (one process, the thread policy's 1 or 2 threads);
* with Ray installed, the same for the Ray executor (2 workers against 1), and Ray's 1
  worker against the local executor (Ray's per-job overhead).

Executors keep their workers across the timed sweeps (a warm-up sweep first), so worker
start-up (importing torch) is not timed. Each ratio is a speed-up: baseline time /
method time, except the share row.

    $ python -m bench.workers [--quick]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import multiprocessing.pool
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ablate.checkpoint import save_checkpoint
from ablate.executors import Executor, LocalExecutor, ProcessExecutor, run_experiment
from ablate.experiment import Experiment
from ablate.model import MatrixThinker, MatrixThinkerConfig
from ablate.tokenizer import ByteTokenizer


def _sweep(root: Path, *, n_items: int, iterations: list[int]) -> Experiment:
    """Two seeded checkpoints x ``iterations``: one job per (checkpoint, T)."""
    for seed in (0, 1):
        torch.manual_seed(seed)
        config = MatrixThinkerConfig(mat_dim=16, n_layers=4, n_heads=4, n_probes=16,
                                     vocab_size=256, max_len=512, dropout=0.0)
        save_checkpoint(MatrixThinker(config).eval(), ByteTokenizer(),
                        root / f"bench-seed{seed}", metadata={"command": "bench", "seed": seed})
    return Experiment.from_dict({
        "version": 1,
        "name": "ray-speedup",
        "checkpoints": [{"path": str(root / "bench-seed*"), "label": "multiprobe"}],
        "interventions": [{"name": "svd_rank_k", "site": "head_input", "k": [1, 4, 8]},
                          {"name": "random_rank_k", "site": "head_input", "k": [4], "draws": 2}],
        "tasks": [{"name": "synthetic", "split": "test", "limit": n_items}],
        "iterations": iterations,
        "batch_size": 8,
    }).resolve()


def _seconds(experiment: Experiment, runs: Path, executor: Executor,
             threads: int | None = 1) -> float:
    """Wall time of the whole sweep into a fresh run directory; ``threads`` per job (None:
    the thread policy's default)."""
    run_dir = Path(tempfile.mkdtemp(dir=runs))
    start = time.perf_counter()
    result = run_experiment(experiment, run_dir, executor=executor, threads=threads)
    elapsed = time.perf_counter() - start
    assert result.n_run == result.n_jobs, "a timed sweep resumed an earlier one"
    return elapsed


def _best(methods: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Minimum time of each method over ``repeats`` rounds, methods interleaved so that a
    change in the machine's load hits all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            times[name].append(method())
    return {name: min(values) for name, values in times.items()}


def _spin(n: int) -> int:
    """Pure CPU work for the machine's own ceiling: no memory traffic, no I/O."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def _spin_seconds(pool: multiprocessing.pool.Pool, n: int, processes: int) -> float:
    """Wall time of two units of ``_spin(n)`` on 1 or 2 pool processes."""
    start = time.perf_counter()
    if processes == 1:
        pool.apply(_spin, (n,))
        pool.apply(_spin, (n,))
    else:
        pool.map(_spin, [n, n], chunksize=1)
    return time.perf_counter() - start


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}."""
    n_items, iterations = (8, [4, 8]) if quick else (16, [4, 6, 8, 10])
    repeats = 1 if quick else 2
    spin = 4_000_000 if quick else 10_000_000
    load_before = os.getloadavg()[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the local executor's jobs run in this process
    try:
        with tempfile.TemporaryDirectory() as scratch, \
                ProcessExecutor(workers=1) as one, ProcessExecutor(workers=2) as two, \
                multiprocessing.get_context("spawn").Pool(2) as pool:
            root = Path(scratch)
            experiment = _sweep(root, n_items=n_items, iterations=iterations)
            for executor in (one, two):  # warm-up: workers import torch and load models
                _seconds(experiment, root, executor)
            pool.map(_spin, [1, 1], chunksize=1)
            methods = {
                "one": lambda: _seconds(experiment, root, one),
                "two": lambda: _seconds(experiment, root, two),
                "default": lambda: _seconds(experiment, root, LocalExecutor(), threads=None),
                "spin_one": lambda: _spin_seconds(pool, spin, 1),
                "spin_two": lambda: _spin_seconds(pool, spin, 2),
            }
            best = _best(methods, repeats)
            ray_best = _ray(experiment, root, repeats)
    finally:
        torch.set_num_threads(threads)
    load = f"load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    sweep = (f"{2 * len(iterations)} jobs x {n_items} items x 6 conditions, d=16 NL=4, "
             f"torch threads 1, best of {repeats}")
    ceiling = best["spin_one"] / best["spin_two"]
    speedup = best["one"] / best["two"]
    rows = [
        {"benchmark": "process executor, 2 workers", "method": "--workers 2",
         "baseline": "--workers 1", "ratio": speedup,
         "detail": f"{best['two']:.1f}s vs {best['one']:.1f}s; speed-up, ideal 2; {sweep}; "
                   f"{load}"},
        {"benchmark": "machine ceiling, 2 processes", "method": "2 processes",
         "baseline": "1 process", "ratio": ceiling,
         "detail": f"pure-Python loop: {best['spin_two']:.1f}s vs {best['spin_one']:.1f}s; "
                   f"what 2 cores give right now; {load}"},
        {"benchmark": "process executor, 2 workers", "method": "its speed-up",
         "baseline": "2 plain processes' speed-up", "ratio": speedup / ceiling,
         "detail": f"{speedup:.2f} / {ceiling:.2f}; target >= 0.9"},
        {"benchmark": "process executor, 2 workers", "method": "--workers 2",
         "baseline": "the default (one process, thread policy)",
         "ratio": best["default"] / best["two"],
         "detail": f"{best['two']:.1f}s vs {best['default']:.1f}s; speed-up; jobs side by "
                   f"side against one job at a time on the threads the policy chose; {load}"},
    ]
    if ray_best is not None:
        rows += [
            {"benchmark": "ray sweep, 2 workers", "method": "ray, 2 jobs at a time",
             "baseline": "ray, 1 job at a time", "ratio": ray_best["one"] / ray_best["two"],
             "detail": f"{ray_best['two']:.1f}s vs {ray_best['one']:.1f}s; speed-up, ideal 2, "
                       f"this machine's ceiling {ceiling:.2f}; {sweep}; {load}"},
            {"benchmark": "ray overhead, 1 worker", "method": "ray, 1 job at a time",
             "baseline": "local executor", "ratio": ray_best["local"] / ray_best["one"],
             "detail": f"{ray_best['one']:.1f}s vs {ray_best['local']:.1f}s; speed-up "
                       f"(< 1: overhead); {sweep}; {load}"},
        ]
    return rows


def _ray(experiment: Experiment, root: Path, repeats: int) -> dict[str, float] | None:
    """Ray's 1 and 2 workers and the local executor, or None without Ray."""
    try:
        import ray
    except ImportError:
        return None
    from ablate.executors.ray import RayExecutor

    owns_ray = not ray.is_initialized()
    if owns_ray:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    try:
        one_worker = RayExecutor(cpus_per_job=1, max_in_flight=1)
        two_workers = RayExecutor(cpus_per_job=1)
        _seconds(experiment, root, two_workers)  # warm-up: both workers import torch
        return _best({
            "local": lambda: _seconds(experiment, root, LocalExecutor()),
            "one": lambda: _seconds(experiment, root, one_worker),
            "two": lambda: _seconds(experiment, root, two_workers),
        }, repeats)
    finally:
        if owns_ray:
            ray.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    for row in run(quick=parser.parse_args().quick):
        print(f"{row['benchmark']}: {row['ratio']:.2f}x {row['method']} vs {row['baseline']} "
              f"({row['detail']})")
