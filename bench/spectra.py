"""Speed of the exact spectra and rank-k projections, as ratios against naive baselines.

Rows compare, in the same run and on the same inputs:
* singular values: `ablate.rank.singular_values` (float64 Gram eigvalsh, batch split over
  threads) against `torch.linalg.svdvals` in float32, on 2048 matrices of 32x32 and on the
  (T+1, B, L, 32, 32) states of a T = 8 forward; plus the Gram route alone (no thread
  split) and the one-spectrum `spectral_summary` against one svdvals per metric;
* 11 rank-k conditions: one `decompose` serving every k against a `torch.linalg.svd` per
  condition, and against the research `truncate_to_rank` (float32 eigh) per condition.

ratio = method time / baseline time (median of interleaved repeats), so below 1 is faster.
Each detail also gives the accuracy measured against float64 in the same run.

    $ python -m bench.spectra            # or: python -m bench.run_all --only spectra
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from ablate import rank
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
def _no_thread_split() -> Iterator[None]:
    saved = rank.MIN_MATRICES_PER_THREAD
    rank.MIN_MATRICES_PER_THREAD = 1 << 62
    try:
        yield
    finally:
        rank.MIN_MATRICES_PER_THREAD = saved


def _gram_route_alone(X: torch.Tensor) -> torch.Tensor:
    with _no_thread_split():
        return singular_values(X)


def _spectrum_error(s: torch.Tensor, reference: torch.Tensor) -> float:
    """max_i |s_i - s_i^ref| / s_1^ref over all matrices (the module's accuracy criterion)."""
    return float(((s.double() - reference).abs() / reference[..., :1]).max())


def _svd_per_condition(X: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for k in KS:
        U, s, Vh = torch.linalg.svd(X, full_matrices=False)
        out.append((U[..., :k] * s[..., None, :k]) @ Vh[..., :k, :])
    return out


def _one_basis(X: torch.Tensor) -> list[torch.Tensor]:
    basis = decompose(X)
    return [svd_project(basis, k) for k in KS]


def _research_per_condition(X: torch.Tensor) -> list[torch.Tensor]:
    return [research_truncate_to_rank(X, k) for k in KS]


def _row(benchmark: str, method: str, baseline: str, t_method: float, t_base: float,
         detail: str) -> dict:
    return {"benchmark": benchmark, "method": method, "baseline": baseline,
            "ratio": t_method / t_base,
            "detail": f"{t_method * 1e3:.1f} vs {t_base * 1e3:.1f} ms "
                      f"(speed-up {t_base / t_method:.2f}x); {detail}"}


def _spectra_rows(X: torch.Tensor, label: str, repeats: int) -> list[dict]:
    reference = torch.linalg.svdvals(X.double())
    errors = {"fast": _spectrum_error(singular_values(X), reference),
              "svdvals32": _spectrum_error(torch.linalg.svdvals(X), reference)}
    t = _medians({"svdvals": lambda: torch.linalg.svdvals(X),
                  "fast": lambda: singular_values(X),
                  "gram": lambda: _gram_route_alone(X)}, repeats)
    accuracy = (f"max|ds|/s1 vs float64: fast {errors['fast']:.1e}, "
                f"svdvals float32 {errors['svdvals32']:.1e}")
    return [
        _row(f"singular values, {label}", "rank.singular_values",
             "torch.linalg.svdvals float32", t["fast"], t["svdvals"], accuracy),
        _row(f"singular values, {label}", "float64 Gram eigvalsh, no thread split",
             "torch.linalg.svdvals float32", t["gram"], t["svdvals"], "route alone"),
    ]


def run(quick: bool = False) -> list[dict]:
    """Rows {benchmark, method, baseline, ratio, detail}; ratio = method time / baseline."""
    repeats = 2 if quick else 5
    B, L = (2, 64) if quick else (4, 128)  # the shapes of bench/hooks.py
    flat = _states((512 if quick else 2048,))
    states = _states((T + 1, B, L), seed=1)
    head_input = states[-1]  # (B, L, d, d): one site
    threads = torch.get_num_threads()
    rows = _spectra_rows(flat, f"{flat.shape[0]}x{D}x{D} float32", repeats)
    rows += _spectra_rows(states, f"T={T} states {tuple(states.shape)}", repeats)

    t = _medians({"summary": lambda: spectral_summary(flat),
                  "separate": lambda: [torch.linalg.svdvals(flat) for _ in range(5)]}, repeats)
    rows.append(_row(f"5 rank metrics, {flat.shape[0]}x{D}x{D}", "rank.spectral_summary",
                     "one svdvals per metric", t["summary"], t["separate"],
                     "erank, research erank, stable rank, participation ratio, numerical rank"))

    sites = ((flat, f"{flat.shape[0]}x{D}x{D}"),
             (head_input, f"head input {tuple(head_input.shape)}"))
    for X, label in sites:
        exact = _svd_per_condition(X.double())
        scale = torch.linalg.matrix_norm(X.double(), ord=2)[..., None, None]
        error = max(float(((fast.double() - best) / scale).abs().max())
                    for fast, best in zip(_one_basis(X), exact, strict=True))
        t = _medians({"svd": lambda X=X: _svd_per_condition(X),
                      "basis": lambda X=X: _one_basis(X),
                      "research": lambda X=X: _research_per_condition(X)}, repeats)
        detail = f"k in {KS}; max|X_k - X_k^float64| / s1 = {error:.1e}; threads {threads}"
        rows.append(_row(f"{len(KS)} rank-k conditions, {label}", "decompose once + svd_project",
                         "torch.linalg.svd per condition", t["basis"], t["svd"], detail))
        rows.append(_row(f"{len(KS)} rank-k conditions, {label}", "decompose once + svd_project",
                         "research truncate_to_rank per condition", t["basis"], t["research"],
                         "float32 eigh of Z Z^T per condition"))
    return rows


if __name__ == "__main__":
    from bench.run_all import print_rows

    print_rows(run())
