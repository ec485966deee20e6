"""How long will a run take? A short calibration on this machine, projected to the whole run.

Jobs that share a model shape, task, mode, conditions and batch size cost the same, so
one of them is calibrated per group: ``evaluate`` runs all of its conditions on a few
items taken from its longest batch and from its median batch (``CALIBRATION_ROWS`` items
each, on one torch thread per job, as jobs side by side run), and the batch times are fitted as
``t = a·B·L + b·B·L²`` (per-position work, and attention, which grows with the
square of the padded length L of a batch of B rows). The fit then prices every batch of
the real job. Peak memory is measured during the longest calibration batch and scaled
to a full batch (memory grows with B·L; the longest batch comes first, so it sets the
peak). Generative jobs are priced as if every item decoded all its ``max_new_tokens``.

The projection assumes jobs side by side do not slow each other while there are free
cores; on a machine shared with other work they do, so treat the figures as a floor.
When the thread policy would give a one-process run 2 threads (two idle cores, no
``--threads``), the longest calibration batch is timed again on 2 threads and the
default row (1 job at a time) is divided by that measured speed-up.

    >>> estimate = estimate_run(experiment)              # doctest: +SKIP
    >>> estimate.wall_seconds(workers=2)                  # doctest: +SKIP
"""

from __future__ import annotations

import heapq
import json
import logging
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ablate.config import resolve_device
from ablate.errors import AblateError
from ablate.executors.jobs import (
    _canonical,
    _checkpoint,
    _few_shot_source,
    _load_items,
)
from ablate.executors.threads import (
    available_cores,
    job_threads,
    model_width,
    torch_threads,
)
from ablate.experiment import CODI, Experiment
from ablate.grid import Job, expand_jobs

logger = logging.getLogger(__name__)

CALIBRATION_ROWS = 4  # items per calibration batch


@dataclass
class GroupEstimate:
    """One group of equally expensive jobs."""

    description: str
    job_ids: list[str]
    seconds_per_job: float
    peak_bytes: int  # resident memory of one job at its largest batch (whole process)
    calibration_seconds: float


@dataclass
class RunEstimate:
    groups: list[GroupEstimate] = field(default_factory=list)
    threads: int = 1  # per job in the calibration (and with --workers N)
    cores: int = 1
    default_threads: int = 1  # what the thread policy gives a one-process run now
    default_speedup: float = 1.0  # its measured speed over ``threads`` (1 job at a time)

    @property
    def job_seconds(self) -> list[float]:
        return [g.seconds_per_job for g in self.groups for _ in g.job_ids]

    def wall_seconds(self, workers: int = 1) -> float:
        """Longest-first schedule of the jobs on ``workers`` slots (its finishing time);
        one slot runs on the default thread setting."""
        if workers <= 1:
            return sum(self.job_seconds) / self.default_speedup
        slots = [0.0] * max(1, workers)
        for seconds in sorted(self.job_seconds, reverse=True):
            heapq.heappush(slots, heapq.heappop(slots) + seconds)
        return max(slots)

    def peak_bytes(self, workers: int = 1) -> int:
        """Resident memory with ``workers`` of the largest jobs running at once."""
        per_job = max((g.peak_bytes for g in self.groups), default=0)
        return per_job * max(1, min(workers, len(self.job_seconds)))


def _resident_peak() -> int | None:
    """Peak resident bytes of this process since the last reset (Linux), else None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_resident_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def _group_key(job: Job, config: Any) -> str:
    shape = {k: getattr(config, k, None) for k in ("mat_dim", "n_layers", "n_heads", "attention",
                                                   "head", "vocab_size", "embedding")}
    return json.dumps([shape, vars(job.task), job.n_iterations, list(job.interventions),
                       job.batch_size, job.device], sort_keys=True, default=str)


def estimate_run(experiment: Experiment, *, rows: int = CALIBRATION_ROWS,
                 threads: int | None = None) -> RunEstimate:
    """Calibrate one job per group of equal jobs and project the whole (resolved) run."""
    if experiment.model == CODI:
        raise AblateError(f"{experiment.source}: --estimate calibrates Matrix Thinker grids; "
                          "a CODI experiment's jobs are few: time one with `ablate run FILE "
                          "--limit N`")
    groups: dict[str, list[Job]] = {}
    for job in expand_jobs(experiment):
        config = _checkpoint(job.checkpoint.path, job.checkpoint.overrides).model.config
        groups.setdefault(_group_key(job, config), []).append(job)
    estimate = RunEstimate(cores=available_cores())
    speedups = []
    for jobs in groups.values():
        # What the thread policy gives this group's jobs in a one-process run now (by the
        # idle cores, or the whole budget for a model wider than SMALL_MATRIX).
        model = _checkpoint(jobs[0].checkpoint.path, jobs[0].checkpoint.overrides).model
        default = 1 if threads is not None else job_threads(estimate.cores,
                                                            width=model_width(model))
        estimate.default_threads = max(estimate.default_threads, default)
        group, used, speedup = _calibrate(jobs, rows, threads, default)
        estimate.groups.append(group)
        estimate.threads = used
        speedups.append((group.seconds_per_job * len(group.job_ids), speedup))
    total = sum(seconds for seconds, _ in speedups)
    if total > 0:  # the run's speed-up: each group's weighted by its share of the time
        estimate.default_speedup = total / sum(seconds / speedup for seconds, speedup in speedups)
    return estimate


def _calibrate(jobs: list[Job], rows: int, threads: int | None,
               default_threads: int) -> tuple[GroupEstimate, int, float]:
    """One group's estimate, its thread count, and the speed-up of ``default_threads``
    over it on the group's longest calibration batch (1.0 when they are the same)."""
    from ablate.evaluation import evaluate
    from ablate.evaluation.batching import length_sorted_batches
    from ablate.interventions import expand_conditions
    from ablate.tasks import get_task

    job = jobs[0]
    loaded = _checkpoint(job.checkpoint.path, job.checkpoint.overrides)
    model, tokenizer, config = loaded.model, loaded.tokenizer, loaded.model.config
    items = _load_items(_canonical(vars(job.task)))
    train = (_load_items(_canonical(vars(_few_shot_source(job.task))))
             if job.task.few_shot else None)
    conditions = expand_conditions(list(job.interventions), d=config.mat_dim,
                                   n_layers=config.n_layers)
    lengths, new_tokens = _lengths(job, tokenizer, items, train, config)
    task = get_task(job.task.name, **job.task.options)  # its stops and max_new_tokens
    batches = length_sorted_batches(lengths, job.batch_size)
    n_threads = threads or 1
    picks = [batches[0], batches[len(batches) // 2]] if len(batches) > 1 else batches[:1]
    samples: list[tuple[float, float, float]] = []  # (B·L, B·L², seconds)
    started = time.perf_counter()
    device = resolve_device(job.device)

    def timed(chosen: list[int], n: int, of_conditions: list[Any]) -> float:
        """Seconds of evaluating items ``chosen`` as one batch on n threads."""
        start = time.perf_counter()
        with torch_threads(n):
            evaluate(model, tokenizer, [items[i] for i in chosen], of_conditions, task=task,
                     mode=job.task.mode, n_iterations=job.n_iterations,
                     eval_seed=job.eval_seed, batch_size=len(chosen), device=device,
                     few_shot=job.task.few_shot, train_items=train,
                     max_new_tokens=job.task.max_new_tokens)
        return time.perf_counter() - start

    timed([0], n_threads, conditions[:1])  # warm-up: first calls allocate and load kernels
    before, extra, scale = _current_resident(), 0.0, 1.0
    for n, batch in enumerate(picks):
        chosen = batch[:rows]
        width = max(lengths[i] for i in chosen) + new_tokens
        if n == 0:  # the longest batch: its memory peak is the job's
            scale = len(batch) / len(chosen)
            tracked = _reset_resident_peak()
            before = _current_resident()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
        samples.append((len(chosen) * width, len(chosen) * width**2,
                        timed(chosen, n_threads, conditions)))
        if n == 0:
            if device.type == "cuda":
                extra = float(torch.cuda.max_memory_allocated(device))
            elif tracked:
                extra = float(max(0, (_resident_peak() or before) - before))
    speedup = 1.0
    if threads is None and default_threads > n_threads:
        speedup = samples[0][2] / max(timed(picks[0][:rows], default_threads, conditions), 1e-9)
    a, b = _fit(samples)
    seconds = sum(a * len(batch) * (max(lengths[i] for i in batch) + new_tokens)
                  + b * len(batch) * (max(lengths[i] for i in batch) + new_tokens) ** 2
                  for batch in batches)
    description = (f"d={config.mat_dim}, {config.n_layers} layers, {config.head} head, "
                   f"T={job.n_iterations}, "
                   f"{job.task.name}/{job.task.split} {job.task.mode}, {len(conditions)} "
                   f"conditions, {len(items)} items, batch {job.batch_size}")
    # CPU: the process as it was plus the batch's growth, scaled to a full batch;
    # CUDA: the device memory the batch allocated, scaled.
    peak = int((before if device.type == "cpu" else 0) + extra * scale)
    group = GroupEstimate(description, [j.job_id for j in jobs], seconds, peak,
                          time.perf_counter() - started)
    return group, n_threads, speedup


def _current_resident() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _lengths(job: Job, tokenizer: Any, items: list, train: list | None,
             config: Any) -> tuple[list[int], int]:
    """Tokens per item as the evaluation batches them, and decode steps per item."""
    from ablate.evaluation.generative import encode_prompts
    from ablate.evaluation.teacher_forced import encode_forced
    from ablate.tasks import get_task

    task = get_task(job.task.name, **job.task.options)
    if job.task.mode == "teacher_forced":
        return [e.length for e in encode_forced(tokenizer, items, task.text_format,
                                                config.max_len)], 0
    prompts = encode_prompts(tokenizer, items, task, few_shot=job.task.few_shot,
                             train_items=train, eval_seed=job.eval_seed,
                             max_new_tokens=job.task.max_new_tokens,
                             max_len=config.max_len)
    return [len(p.prompt_ids) for p in prompts], max(p.max_new_tokens for p in prompts)


def _fit(samples: list[tuple[float, float, float]]) -> tuple[float, float]:
    """(a, b) of t = a·P + b·Q through the samples; b = 0 when they cannot separate it."""
    if len(samples) == 2:
        (p1, q1, t1), (p2, q2, t2) = samples
        det = p1 * q2 - p2 * q1
        if abs(det) > 1e-9 * max(p1 * q2, 1.0):
            a = (t1 * q2 - t2 * q1) / det
            b = (p1 * t2 - p2 * t1) / det
            if a > 0 and b >= 0:
                return a, b
    return sum(t for _, _, t in samples) / sum(p for p, _, _ in samples), 0.0


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def worker_counts(estimate: RunEstimate) -> list[int]:
    """1, 2, 4, ... up to the cores (and the jobs) of this machine."""
    top = max(1, min(estimate.cores, len(estimate.job_seconds)))
    counts, n = [], 1
    while n < top:
        counts.append(n)
        n *= 2
    return counts + [top]


__all__ = ["GroupEstimate", "RunEstimate", "estimate_run", "format_bytes", "format_duration",
           "worker_counts"]
