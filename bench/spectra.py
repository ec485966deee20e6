"""Speed of the exact spectra and rank-k projections, as ratios against naive baselines.

Rows compare, in the same run and on the same inputs:
* singular values: `ablate.rank.singular_values` (float64 Gram eigvalsh, single-threaded
  LAPACK with the batch split over threads) against `torch.linalg.svdvals` in float32, on
  2048 matrices of 32x32 and on the (T+1, B, L, 32, 32) states of a T = 8 forward; and the
  one-spectrum `spectral_summary` against one svdvals per metric;
* 11 rank-k conditions: one `decompose` serving every k against a `torch.linalg.svd` per
  condition, and against the research `truncate_to_rank` (float32 eigh) per condition.

Each comparison runs twice: with torch's thread setting as found, and with one torch
thread for both sides, which isolates the route from the threading policy.

ratio = method time / baseline time (median of interleaved repeats), so below 1 is faster.
Each detail also gives the accuracy measured against float64 in the same run.

    $ python -m bench.spectra            # or: python -m bench.run_all --only spectra
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from ablate.projections import decompose, research_truncate_to_rank, svd_project
from ablate.rank import singular_values, spectral_summary

D = 32
T = 8
KS = (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24)  # 11 conditions, all below d


def _states(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Float32 matrices whose spectra decay like trained states (effective rank ~ 9 of 32)."""
    generator = torch.Generator().manual_seed(seed)
    decay = torch.exp(-torch.arange(D) / 4.0)
    return torch.randn(*shape, D, D, generator=generator) * decay


def _medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per function; repeats interleave the functions so load drifts hit all."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run with n intra-op threads (None: leave torch's setting)."""
    saved = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _spectrum_error(s: torch.Tensor, reference: torch.Tensor) -> float:
    """max_i |s_i - s_i^ref| / s_1^ref over all matrices (the module's accuracy criterion)."""
    return float(((s.double() - reference).abs() / reference[..., :1]).max())


def _one_condition_svd(X: torch.Tensor, k: int) -> torch.Tensor:
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    return (U[..., :k] * s[..., None, :k]) @ Vh[..., :k, :]


def _one_basis(X: torch.Tensor) -> list[torch.Tensor]:
    basis = decompose(X)
    return [svd_project(basis, k) for k in KS]


def _row(benchmark: str, method: str, baseline: str, t_method: float, t_base: float,
         detail: str) -> dict:
    return {"benchmark": benchmark, "method": method, "baseline": baseline,
            "ratio": t_method / t_base,
            "detail": f"{t_method * 1e3:.0f} vs {t_base * 1e3:.0f} ms "
                      f"(speed-up {t_base / t_method:.2f}x); {detail}"}


def _settings() -> tuple[tuple[str, int | None], ...]:
    """Torch's own thread setting, and one thread for both sides (the route alone)."""
    threads = torch.get_num_threads()
    own = (f"{threads} torch threads", None)
    return (own,) if threads == 1 else (own, ("1 torch thread", 1))


def _spectra_rows(X: torch.Tensor, label: str, repeats: int) -> list[dict]:
    reference = torch.linalg.svdvals(X.double())
    accuracy = (f"max|ds|/s1 vs float64: {_spectrum_error(singular_values(X), reference):.1e} "
                f"(svdvals float32 {_spectrum_error(torch.linalg.svdvals(X), reference):.1e})")
    rows = []
    for setting, threads in _settings():
        with _torch_threads(threads):
            t = _medians({"svdvals": lambda: torch.linalg.svdvals(X),
                          "fast": lambda: singular_values(X)}, repeats)
        rows.append(_row(f"singular values, {label}, {setting}", "rank.singular_values",
                         "torch.linalg.svdvals float32", t["fast"], t["svdvals"], accuracy))
    return rows


def _projection_rows(X: torch.Tensor, label: str, repeats: int) -> list[dict]:
    """One basis for 11 conditions against one decomposition per condition.

    Every condition of a baseline repeats the same decomposition, so its time is measured
    for one condition (k = 4) and multiplied by 11; that keeps the bench short when a
    loaded machine makes the baselines slow.
    """
    X64 = X.double()
    scale = torch.linalg.matrix_norm(X64, ord=2)[..., None, None]
    error = max(float(((fast.double() - _one_condition_svd(X64, k)) / scale).abs().max())
                for fast, k in zip(_one_basis(X), KS, strict=True))
    accuracy = f"k in {KS}; max|X_k - X_k^float64| / s1 = {error:.1e}"
    benchmark = f"{len(KS)} rank-k conditions, {label}"
    rows = []
    for setting, threads in _settings():
        with _torch_threads(threads):
            t = _medians({"svd": lambda: _one_condition_svd(X, 4),
                          "research": lambda: research_truncate_to_rank(X, 4),
                          "basis": lambda: _one_basis(X)}, repeats)
        n = len(KS)
        rows.append(_row(f"{benchmark}, {setting}", "decompose once + svd_project",
                         "torch.linalg.svd per condition", t["basis"], n * t["svd"], accuracy))
        rows.append(_row(f"{benchmark}, {setting}", "decompose once + svd_project",
                         "research truncate_to_rank per condition", t["basis"],
                         n * t["research"], "float32 eigh of Z Z^T per condition"))
    return rows


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}; ratio = method time / baseline."""
    repeats = 3 if quick else 5
    B, L = (2, 64) if quick else (4, 128)  # the shapes of bench/hooks.py
    flat = _states((512 if quick else 2048,))
    states = _states((T + 1, B, L), seed=1)
    load = os.getloadavg()[0]
    rows = _spectra_rows(flat, f"{flat.shape[0]}x{D}x{D}", repeats)
    rows += _spectra_rows(states, f"T={T} states {tuple(states.shape)}", repeats)
    t = _medians({"summary": lambda: spectral_summary(flat),
                  "separate": lambda: [torch.linalg.svdvals(flat) for _ in range(5)]}, repeats)
    rows.append(_row(f"5 rank metrics, {flat.shape[0]}x{D}x{D}", "rank.spectral_summary",
                     "one svdvals per metric", t["summary"], t["separate"],
                     "erank, research erank, stable rank, participation ratio, numerical rank"))
    rows += _projection_rows(flat, f"{flat.shape[0]}x{D}x{D}", repeats)
    rows += _projection_rows(states[-1], f"head input {tuple(states[-1].shape)}", repeats)
    for row in rows:
        row["detail"] += f"; load average {load:.1f} on {os.cpu_count()} CPUs at start"
    return rows


if __name__ == "__main__":
    from bench.run_all import print_rows

    print_rows(run())
