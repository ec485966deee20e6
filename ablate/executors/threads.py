"""How many torch threads a job uses: two on idle cores, one when they are shared.

A Matrix Thinker at d = 32 multiplies 32x32 matrices. On cores of its own a second torch
thread helps (measured on the idle 2-core development machine: the research-size forward
1.7x faster on 2 threads, the quickstart 1.1-1.4x), but next to another busy process the
threads wait for each other at every one of those small operations (a 32x32 projection
took 5.5 ms on 2 threads and 0.013 ms on 1; the forward ran 1.3-2.7x slower on 2). So the
default is measured, not fixed: a job runs on 2 threads when at least two cores of its
budget were left idle by other processes (``/proc/stat`` minus this process's own CPU
time, over the last batch or, at the first call of a process, over ``FIRST_SAMPLE``
seconds), else on 1. It is decided again between batches (``JobThreads.adjust``), so a
competitor that starts mid-run is met at the next batch.

Why never more than ``DEFAULT_MAX`` = 2: a thread count can change how a kernel splits
its work, and with it the last bits of a result. At 1 and 2 threads the shipped
quickstart (12,600 records), the CODI study (3,200) and the research-size forward give
bit-identical records (single-query attention is kept on one thread for this, see
``ablate.model.attention``); 3 or more threads change the last bits (measured: up to
5.6e-6 relative on the quickstart at 4 and 8 threads). A BLAS library may still split
some small products differently at 2 threads (seen on a d = 4 test model's output head
at 6 rows: 1.2e-7), so ``--threads 1`` is the setting for records that are bit-identical
whatever the load. More cores are used by jobs side by side (``--workers N``: each job
gets ``cores // N``, one thread each when N = cores), or by asking: ``--threads N``.
Where ``/proc/stat`` is missing (macOS, Windows) the default is 1 thread. Models wider
than ``SMALL_MATRIX`` (GPT-2-based CODI checkpoints, n_embd 768) multiply matrices large
enough to share and get every core of their budget. bench/threads.py measures the policy.

    >>> job_threads(budget=1)
    1
    >>> job_threads(budget=8, requested=3)
    3
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ablate.errors import AblateError
from ablate.intra_op import torch_threads

logger = logging.getLogger(__name__)

FIRST_SAMPLE = 0.1  # seconds of /proc/stat the first decision of a process waits for
MIN_WINDOW = 0.05  # shorter windows keep the last decision (the kernel counts in 10 ms ticks)
SLACK = 0.2  # a core counts as free when other processes used at most 20 % of it
DEFAULT_MAX = 2  # the most threads the default gives a job (records stay bit-identical)
SMALL_MATRIX = 128  # wider models (GPT-2-based CODI, n_embd 768) get their whole budget


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = max(1, os.cpu_count() or 1)
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup's quota (v2 ``cpu.max``, v1 ``cfs_quota_us``), if any."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as q, \
                open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as p:
            quota_us, period_us = int(q.read()), int(p.read())
        return quota_us / period_us if quota_us > 0 else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class _Reading:
    wall: float  # time.monotonic()
    busy: float  # CPU seconds the cores spent busy since boot (every process)
    own: float  # CPU seconds of this process


def _cores() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def _read(cores: set[int]) -> _Reading | None:
    """Busy seconds of ``cores`` from /proc/stat; None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    try:
        for line in lines:
            name, *fields = line.split() or [""]
            if name[3:].isdigit() and name.startswith("cpu") and int(name[3:]) in cores:
                values = [int(x) for x in fields[:8]]  # user nice system idle iowait irq ...
                busy += sum(values) - values[3] - values[4]
    except (ValueError, IndexError):  # a /proc/stat of another format: not measurable
        return None
    return _Reading(time.monotonic(), busy / ticks, time.process_time())


class _FreeCores:
    """Cores other processes left idle since the previous call (process-wide state)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: _Reading | None = None
        self._free: int | None = None
        self._cores = _cores()

    @property
    def last(self) -> int | None:
        """The count the latest call decided (None before the first)."""
        return self._free

    def __call__(self) -> int | None:
        with self._lock:
            now = _read(self._cores)
            if now is None:
                return None
            if self._last is None:
                time.sleep(FIRST_SAMPLE)
                self._last, now = now, _read(self._cores) or now
            window = now.wall - self._last.wall
            if window >= MIN_WINDOW or (self._free is None and window > 0):
                others = max(0.0, (now.busy - self._last.busy) - (now.own - self._last.own))
                self._free = max(0, math.floor(len(self._cores) - others / window + SLACK))
                self._last = now
            return self._free


free_cores = _FreeCores()


def job_threads(budget: int, requested: int | None = None, width: int | None = None) -> int:
    """Torch threads for a job that may use ``budget`` cores: ``requested`` (>= 1) if
    given; for a model whose widest matrix is wider than ``SMALL_MATRIX`` (a GPT-2-based
    CODI model) the whole budget, as its products are large enough to share; else the
    idle cores within the budget, at most ``DEFAULT_MAX`` (1 where the load cannot be
    measured). ``width`` None: unknown, treated as small."""
    if requested is not None:
        if requested < 1:
            raise AblateError(f"--threads {requested} must be >= 1 (or leave it out for the "
                              "default: 2 on idle cores, 1 on busy ones)")
        return requested
    if budget <= 1:
        return 1
    if width is not None and width > SMALL_MATRIX:
        return budget
    return max(1, min(budget, DEFAULT_MAX, free_cores() or 1))


def model_width(model: object) -> int | None:
    """The widest matrix operand of a loaded model: a Matrix Thinker's d, a GPT-2's n_embd."""
    widths = []
    for part in (model, getattr(model, "gpt2", None)):  # research CODI: GPT-2 + bottleneck
        config = getattr(part, "config", None)
        for name in ("mat_dim", "n_embd", "hidden_size", "d_model"):
            value = getattr(config, name, None)
            if isinstance(value, int):
                widths.append(value)
                break
    return max(widths) if widths else None


class JobThreads:
    """A job's torch threads: set on entry, decided again by ``adjust()`` between
    batches (unless fixed by ``requested``), restored on exit."""

    def __init__(self, budget: int, requested: int | None = None,
                 width: int | None = None) -> None:
        self.budget, self.requested, self.width = budget, requested, width
        self.threads = job_threads(budget, requested, width)
        self.used = [self.threads]  # every count the job ran on, in order of first use
        logger.info("job starts on %d torch thread(s) (%s)", self.threads,
                    "--threads" if requested is not None else "thread policy")

    def adjust(self) -> None:
        import torch

        if self.requested is None and self.budget > 1:
            threads = job_threads(self.budget, width=self.width)
            if threads != self.threads:
                logger.info("torch threads %d -> %d (idle cores changed)", self.threads,
                            threads)
                self.threads = threads
                if threads not in self.used:
                    self.used.append(threads)
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)

    @contextmanager
    def applied(self) -> Iterator[JobThreads]:
        with torch_threads(self.threads):
            yield self
