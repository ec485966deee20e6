"""How many torch threads a job uses: one for small-matrix models, and jobs side by side.

A Matrix Thinker at d = 32 multiplies 32x32 matrices: an operation is far too small to
share between threads, and on a machine whose cores are busy the threads wait for each
other. Measured on the 2-core development machine (issue 13): a 32x32 projection took
0.013 ms on one thread and 5.5 ms on two threads while another process was busy, and a
teacher-forced forward ran at 140 tokens/s on one thread against 54 on two. So a job
of a model whose matrices are at most ``SMALL_MATRIX`` wide runs on one thread, and
more cores are used by running more jobs at once (``ablate run --workers N``); wider
models (GPT-2-based CODI checkpoints, n_embd 768) get every core of their budget.
``--threads N`` overrides the choice; bench/threads.py checks it.

    >>> job_threads(width=32, budget=8)
    1
    >>> job_threads(width=768, budget=8)
    8
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from ablate.errors import AblateError

SMALL_MATRIX = 128  # widest matrix operand that still runs best on one thread


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def job_threads(width: int | None, budget: int, requested: int | None = None) -> int:
    """Torch threads for a job whose widest matrix operand is ``width`` (None: unknown,
    treated as small) and which may use ``budget`` cores; ``requested`` (>= 1) wins."""
    if requested is not None:
        if requested < 1:
            raise AblateError(f"--threads {requested} must be >= 1 (or leave it out for the "
                              "default: 1 for small-matrix models)")
        return requested
    if width is None or width <= SMALL_MATRIX:
        return 1
    return max(1, budget)


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


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the setting."""
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
