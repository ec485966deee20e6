"""How encoded items become model batches: length-sorted batches, padding, precision.

Right padding serves teacher forcing: attention is causal, so a real token never sees the
padding after it and no mask is needed. Left padding serves generation: every row's next
token then sits at the same column, with a mask and explicit position ids so a padded
row computes exactly what it would alone.

    >>> batches = length_sorted_batches([5, 3, 9, 4], batch_size=2)
    >>> batches
    [[2, 0], [3, 1]]
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch

from ablate.errors import AblateError

PRECISIONS = ("float32", "bf16")
PAD_ID = 0  # any valid id: padded positions are never read


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Item indices grouped into batches of similar length (longest first, ties by index),
    so little padding is computed; the order is a pure function of the lengths."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AblateError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


# Matrix entries one teacher-forced forward pass may hold per state tensor: 2^24 float32
# (64 MiB; 16384 positions at d = 32). A pass keeps ~6 such tensors plus the float64
# decomposition of the head input, ~42 KiB per position at d = 32 (measured), so this
# bounds a research-size job's peak near 1 GiB whatever its batch size (bench/memory.py).
MAX_PASS_ENTRIES = 1 << 24


def within_memory(batch: Sequence[int], lengths: Sequence[int], d: int,
                  max_entries: int | None = None) -> list[list[int]]:
    """``batch`` (item indices, longest first) cut into consecutive passes whose padded
    positions times d² stay within ``max_entries`` (default ``MAX_PASS_ENTRIES``; at least
    one item per pass). Results do not depend on the cut: each item's positions are
    computed on their own."""
    max_entries = max_entries or MAX_PASS_ENTRIES
    passes: list[list[int]] = []
    for index in batch:
        if passes:
            current = passes[-1]
            width = max(lengths[i] for i in current + [index])
            if (len(current) + 1) * width * d * d <= max_entries:
                current.append(index)
                continue
        passes.append([index])
    return passes


def right_pad(sequences: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    """(B, L_max) ids, each row's tokens first."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return ids.to(device)


def left_pad(
    sequences: Sequence[Sequence[int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention_mask, position_ids), each (B, L_max), tokens right-aligned;
    positions count from 0 at each row's first real token."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = True
    positions = (mask.long().cumsum(1) - 1).clamp_min(0)
    return ids.to(device), mask.to(device), positions.to(device)


def available_memory(device: torch.device) -> int | None:
    """Bytes this process could still allocate on ``device`` (CUDA: free device memory;
    CPU: MemAvailable of /proc/meminfo), or None where that cannot be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def decode_memory_budget(device: torch.device) -> int:
    """Bytes the decode caches of one generative batch may use: a quarter of what is
    available (at d = 32, T = 8, 8 layers a generated position costs 512 KiB per row),
    and 2 GiB where that cannot be read."""
    available = available_memory(device)
    return available // 4 if available is not None else 2 << 30


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast on CUDA for "bf16"; nothing for "float32"."""
    if precision not in PRECISIONS:
        raise AblateError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    if precision == "float32":
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise AblateError(
            f"precision 'bf16' needs a CUDA device (got '{device}'); use precision 'float32' on CPU"
        )
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
