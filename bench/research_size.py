"""What the research-size benchmarks share: the model, GSM8K items, timers, the bmm yardstick.

The research configuration is a byte-level Matrix Thinker with d = 32, 8 layers, 8 heads,
32 probes, T = 8 (spec §7.4: "the harness's target configuration"); max_len is 2048 here
(the byte script's 4096 halved) so that every GSM8K test item (up to ~1500 bytes) fits
untruncated. Weights are seeded
random: speed does not depend on what a model learned.

The yardstick of every throughput ratio is ``torch.bmm`` on 32x32 float32 matrices in
the same process, measured right next to the method: FLOPs / (FLOPs at the bmm rate).
Its rate depends on the batch of matrices (in cache or not), so ``bmm_rate`` reports the
best of a range of batch sizes: the ratio never flatters the method. Steps bound by
memory traffic (decoding over a long cache) are also set against the bytes they must
read at ``read_rate``, the best rate of reading one large tensor in the same process.

    >>> model = research_model()
    >>> items = gsm8k_items(8)
    >>> rate = bmm_rate()            # GFLOP/s
    >>> bandwidth = read_rate()      # GB/s
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ablate.model import MatrixThinker, MatrixThinkerConfig

D, N_LAYERS, N_HEADS, T = 32, 8, 8, 8
ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ABLATE_SHARED", ROOT.parent / "shared"))
GSM8K = SHARED / "data" / "gsm8k"


def research_model(seed: int = 0, vocab_size: int = 256, max_len: int = 2048,
                   **overrides: object) -> MatrixThinker:
    torch.manual_seed(seed)
    settings = dict(mat_dim=D, n_layers=N_LAYERS, n_heads=N_HEADS, n_probes=D,
                    vocab_size=vocab_size, max_len=max_len, dropout=0.0, n_iterations=T)
    config = MatrixThinkerConfig(**{**settings, **overrides})
    return MatrixThinker(config).eval()


def gsm8k_items(n: int, split: str = "test") -> list:
    """The first ``n`` GSM8K items of ``split`` from ../shared/data/gsm8k."""
    from ablate.tasks import get_task

    if not (GSM8K / f"{split}.jsonl").exists():
        raise SystemExit(f"GSM8K not found at {GSM8K}; set ABLATE_SHARED to the shared folder")
    return get_task("gsm8k").load(split, path=str(GSM8K), limit=n)


def cpu_and_wall(fn: Callable[[], object]) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def best_of(fn: Callable[[], object], repeats: int, clock: str = "wall") -> float:
    """Fastest of ``repeats`` calls after one warm-up (``clock``: "wall" or "cpu")."""
    fn()
    index = 0 if clock == "cpu" else 1
    return min(cpu_and_wall(fn)[index] for _ in range(repeats))


def bmm_rate(sizes: tuple[int, ...] = (64, 256, 1024), seconds: float = 0.3,
             device: str = "cpu") -> float:
    """GFLOP/s of torch.bmm on (n, 32, 32) x (n, 32, 32) float32, best over ``sizes``.
    On CPU per second of this process's CPU time (as the CPU benchmarks time methods),
    on CUDA per second of wall time."""
    clock = time.process_time if device == "cpu" else time.perf_counter
    best = 0.0
    for n in sizes:
        a = torch.randn(n, D, D, device=device)
        b = torch.randn(n, D, D, device=device)
        torch.bmm(a, b)
        calls, start = 0, clock()
        while clock() - start < seconds:
            torch.bmm(a, b)
            calls += 1
            if device != "cpu":
                torch.cuda.synchronize()
        best = max(best, calls * 2 * n * D**3 / (clock() - start) / 1e9)
    return best


def read_rate(megabytes: int = 256, seconds: float = 0.3) -> float:
    """GB/s of reading a float32 tensor of ``megabytes`` (a sum over it, far larger than
    the caches) per second of this process's CPU time, best of the calls in ``seconds``:
    the memory-bandwidth yardstick of steps that are bound by reading cached keys and
    values."""
    x = torch.ones(megabytes * 2**20 // 4)
    x.sum()
    best, start = 0.0, time.process_time()
    while time.process_time() - start < seconds:
        t = time.process_time()
        x.sum()
        best = max(best, x.numel() * 4 / max(time.process_time() - t, 1e-9) / 1e9)
    return best


def load_note() -> str:
    """The machine's load, for the detail column (benchmarks share the cores)."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return f"{os.cpu_count()} cores"
    return f"load avg {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"
