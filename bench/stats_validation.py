"""Validation grid for ablate.stats: coverage and false-positive rate by method.

Simulates the design of docs/statistics ("Validation"): binary outcomes over seeds x shared
problems with seed spread sd_seed and shared problem-by-condition spread sd_problem_effect;
per cell an effect run (coverage) and a null run (E3 truth 0: false positives). Also an
effective-rank slope grid (AR(1) noise over iterations), a length-confounded depth grid,
and a grid of several eval seeds per problem (docs/statistics.md, "Several eval seeds").
Methods: E1 (paired problem bootstrap), E3 (two-way interval), and the naive t test on
per-seed estimates; for eval seeds also the same intervals with (eval seed, problem) pairs
wrongly counted as problems. Writes a CSV (one row per cell and method) for the report
appendix; ``--studies`` reruns some studies and keeps the other rows of ``--out``.

    python bench/stats_validation.py                       # full grid, 1000 replicates
    python bench/stats_validation.py --replicates 100 --n-boot 500 --items 200 --workers 2
    python bench/stats_validation.py --studies eval_seeds  # one study, merged into --out
    python bench/stats_validation.py --speed-only          # vectorised vs looped bootstrap
    python bench/stats_validation.py --check               # --out against the protocol bands

``--check`` reads the table and says, per study and method, in how many cells coverage and
the false-positive rate fall inside the protocol's bands (93.6-96.4 % and 3.6-6.4 % at 1000
replicates: +-2 Monte-Carlo SE), on the safe side of them (conservative: more coverage,
fewer false positives), or on the unsafe side (anti-conservative).
"""

from __future__ import annotations

import os

# One BLAS thread per worker: the grid is parallel over cells, not inside matrix products.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from multiprocessing import Pool  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ablate.stats.intervals import (  # noqa: E402
    bootstrap_counts,
    bootstrap_indices,
    paired_difference,
)
from ablate.stats.simulate import (  # noqa: E402
    BinaryCell,
    DepthCell,
    ErankCell,
    EvalSeedCell,
    depth_study,
    erank_slope_study,
    eval_seed_study,
    paired_binary_study,
)

METHODS = {  # method -> (coverage of its own truth, coverage of the E3 truth, rejections)
    "E1 paired problem bootstrap": ("coverage_e1", "coverage_e1_of_e3_truth", "reject_e1"),
    "E3 two-way (seeds and problems)": ("coverage_e3", "coverage_e3", "reject_e3"),
    "t test on per-seed estimates": ("coverage_seed_t", "coverage_seed_t", "reject_seed_t"),
    "E1 problem-clustered OLS": ("coverage_ols", "coverage_ols_of_e3_truth", "reject_ols"),
    "E1, eval seeds counted as problems": ("pooled_coverage_e1",
                                           "pooled_coverage_e1_of_e3_truth",
                                           "pooled_reject_e1"),
    "E3, eval seeds counted as problems": ("pooled_coverage_e3", "pooled_coverage_e3",
                                           "pooled_reject_e3"),
}
STUDIES = ("binary", "erank", "depth", "eval_seeds")
DESIGN_COLUMNS = ("n_seeds", "n_items", "sd_seed", "sd_problem_effect", "sd_seed_slope",
                  "sd_seed_effect", "n_eval_seeds", "sd_eval")
EFFECT_BINARY = {"mu": 0.5, "beta": 0.4}
EFFECT_ERANK_SLOPE = 0.1
EFFECT_DEPTH = 0.05


def _run(task: tuple[int, str, object, int, int, np.random.SeedSequence]
         ) -> tuple[int, dict[str, float]]:
    index, study, cell, replicates, n_boot, seed = task
    rng = np.random.default_rng(seed)
    function = {"binary": paired_binary_study, "erank": erank_slope_study,
                "depth": depth_study, "eval_seeds": eval_seed_study}[study]
    return index, function(cell, n_replicates=replicates, n_boot=n_boot, rng=rng)


def _tasks(args: argparse.Namespace) -> list[tuple[str, str, object]]:
    """(study, scenario, cell) for every grid cell; scenario "effect" or "null"."""
    tasks = []
    for s, n, sd_seed, sd_g in itertools.product(args.seeds, args.items, args.seed_sd,
                                                 args.problem_sd):
        if "binary" not in args.studies:
            break
        null = BinaryCell(n_seeds=s, n_items=n, sd_seed=sd_seed, sd_problem_effect=sd_g)
        tasks += [("binary", "effect", replace(null, **EFFECT_BINARY)), ("binary", "null", null)]
    if "eval_seeds" in args.studies:
        # Two eval seeds; v_seed,eval of SD 0 (nothing seeded matters) or 0.3 (a new random
        # subspace per eval seed), on top of a modest seed spread.
        for s, sd_eval in itertools.product(args.seeds, (0.0, 0.3)):
            null = EvalSeedCell(n_seeds=s, n_items=min(args.items), n_eval_seeds=2,
                                sd_seed=0.1, sd_problem_effect=1.5, sd_eval=sd_eval)
            tasks += [("eval_seeds", "effect", replace(null, **EFFECT_BINARY)),
                      ("eval_seeds", "null", null)]
    if not args.skip_erank and "erank" in args.studies:
        for s, sd in itertools.product(args.seeds, (0.0, 0.05)):
            null = ErankCell(n_seeds=s, n_items=200, sd_seed_slope=sd)
            tasks += [("erank", "effect", replace(null, slope=EFFECT_ERANK_SLOPE)),
                      ("erank", "null", null)]
    if not args.skip_depth and "depth" in args.studies:
        for s, sd in itertools.product(args.seeds, (0.0, 0.02)):
            null = DepthCell(n_seeds=s, n_items=min(args.items), sd_seed_effect=sd)
            tasks += [("depth", "effect", replace(null, depth_effect=EFFECT_DEPTH)),
                      ("depth", "null", null)]
    return tasks


def _table(results: list[tuple[str, str, dict[str, float]]]) -> pd.DataFrame:
    """One row per cell and method: coverage from the effect run, rejections from the null."""
    cells: dict[tuple, dict[str, dict[str, float]]] = {}
    for study, scenario, summary in results:
        design = {k: v for k, v in summary.items() if k in DESIGN_COLUMNS}
        key = (study, tuple(sorted(design.items())))
        cells.setdefault(key, {})[scenario] = summary
    rows = []
    for (study, design), runs in cells.items():
        effect, null = runs["effect"], runs["null"]
        replicates = int(effect["replicates"])
        band = 2 * math.sqrt(0.95 * 0.05 / replicates)
        for method, (own, e3_truth, reject) in METHODS.items():
            if own not in effect:
                continue
            rows.append({
                "study": study, **dict(design), "method": method, "replicates": replicates,
                "coverage_own_truth": effect[own], "coverage_own_truth_se": effect[f"{own}_se"],
                "coverage_e3_truth": effect[e3_truth],
                "fpr_e3_null": null[reject], "fpr_e3_null_se": null[f"{reject}_se"],
                "coverage_in_band": abs(effect[own] - 0.95) <= band,
                "fpr_in_band": abs(null[reject] - 0.05) <= band})
        if "reject_raw_spearman" in null:
            rows.append({"study": study, **dict(design), "method": "raw Spearman (no length "
                         "adjustment)", "replicates": replicates,
                         "fpr_e3_null": null["reject_raw_spearman"],
                         "fpr_e3_null_se": null["reject_raw_spearman_se"],
                         "fpr_in_band": abs(null["reject_raw_spearman"] - 0.05) <= band})
    return pd.DataFrame(rows)


def _side(value: float, nominal: float, half: float, *, higher_is_safe: bool) -> str:
    if abs(value - nominal) <= half:
        return "in band"
    return "conservative" if (value > nominal) == higher_is_safe else "anti-conservative"


def protocol_check(table: pd.DataFrame) -> pd.DataFrame:
    """Per study and method: the number of cells, the range of coverage and of the
    false-positive rate, and how many cells fall in the protocol's bands (both rates), on
    the conservative side, or on the anti-conservative side (either rate)."""
    rows = []
    for (study, method), cells in table.groupby(["study", "method"], sort=False):
        sides = []
        for cell in cells.itertuples(index=False):
            half = 2 * math.sqrt(0.95 * 0.05 / cell.replicates)
            found = []
            if pd.notna(cell.coverage_own_truth):
                found.append(_side(cell.coverage_own_truth, 0.95, half, higher_is_safe=True))
            if pd.notna(cell.fpr_e3_null) and method.startswith(("E3", "t test", "raw")):
                found.append(_side(cell.fpr_e3_null, 0.05, half, higher_is_safe=False))
            sides.append("anti-conservative" if "anti-conservative" in found else
                         "conservative" if "conservative" in found else "in band")
        rows.append({"study": study, "method": method, "cells": len(cells),
                     "coverage": _range(cells["coverage_own_truth"]),
                     "false positives": _range(cells["fpr_e3_null"]),
                     "in band": sides.count("in band"),
                     "conservative": sides.count("conservative"),
                     "anti-conservative": sides.count("anti-conservative")})
    return pd.DataFrame(rows)


def _range(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    return f"{100 * values.min():.1f}-{100 * values.max():.1f}%"


def _speed(rng: np.random.Generator, n_seeds: int = 5, n_items: int = 1319,
           n_boot: int = 2000) -> None:
    """Ratio of a per-replicate Python loop to the vectorised count-matrix bootstrap."""
    values = rng.random((n_seeds, n_items))
    start = time.perf_counter()
    indices = bootstrap_indices(n_items, n_boot, rng)
    looped = np.array([values[:, row].mean(axis=1) for row in indices])
    loop_s = time.perf_counter() - start
    start = time.perf_counter()
    counts = bootstrap_counts(n_items, n_boot, rng)
    vectorised = counts @ values.T / n_items
    vector_s = time.perf_counter() - start
    assert looped.shape == vectorised.shape
    start = time.perf_counter()
    paired_difference(values, values[::-1], rng=rng, n_boot=n_boot)
    full_s = time.perf_counter() - start
    print(f"bootstrap B={n_boot} on {n_seeds} x {n_items}: loop {loop_s:.3f} s, vectorised "
          f"{vector_s:.3f} s, ratio {loop_s / vector_s:.1f}x; paired_difference {full_s:.3f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--items", type=int, nargs="+", default=[200, 1319])
    parser.add_argument("--seed-sd", type=float, nargs="+", default=[0.0, 0.1, 0.3])
    parser.add_argument("--problem-sd", type=float, nargs="+", default=[0.0, 1.5])
    parser.add_argument("--skip-erank", action="store_true")
    parser.add_argument("--skip-depth", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/stats_validation.csv"))
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--check", action="store_true",
                        help="summarise --out against the protocol bands; no simulation")
    parser.add_argument("--studies", nargs="+", choices=STUDIES, default=list(STUDIES),
                        help="studies to run; rows of the others in --out are kept")
    args = parser.parse_args(argv)
    if args.check:
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(protocol_check(pd.read_csv(args.out)).to_string(index=False))
        return 0
    _speed(np.random.default_rng(args.seed))
    if args.speed_only:
        return 0
    grid = _tasks(args)
    seeds = np.random.SeedSequence(args.seed).spawn(len(grid))
    tasks = [(index, study, cell, args.replicates, args.n_boot, seed)
             for index, ((study, _, cell), seed) in enumerate(zip(grid, seeds, strict=True))]
    start = time.perf_counter()
    summaries: dict[int, dict[str, float]] = {}
    # Most expensive runs first so the pool does not end on one long straggler.
    order = sorted(tasks, key=lambda task: -task[2].n_seeds * task[2].n_items)
    with Pool(args.workers) as pool:
        for index, summary in pool.imap_unordered(_run, order, chunksize=1):
            summaries[index] = summary
            study, scenario, cell = grid[index]
            print(f"[{len(summaries)}/{len(grid)} {time.perf_counter() - start:.0f} s] "
                  f"{study} {scenario} {cell}", file=sys.stderr, flush=True)
    results = [(study, scenario, summaries[index])
               for index, (study, scenario, _) in enumerate(grid)]
    table = _table(results)
    if set(args.studies) != set(STUDIES) and args.out.is_file():
        kept = pd.read_csv(args.out)
        kept = kept[~kept["study"].isin(args.studies)]
        table = pd.concat([kept, table], ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    with pd.option_context("display.max_rows", None, "display.width", 200,
                           "display.float_format", "{:.3f}".format):
        shown = [c for c in ("study", *DESIGN_COLUMNS, "method", "coverage_own_truth",
                             "coverage_e3_truth", "fpr_e3_null") if c in table.columns]
        print(table[shown].to_string(index=False))
    band = 2 * math.sqrt(0.95 * 0.05 / args.replicates)
    print(f"{len(grid)} runs x {args.replicates} replicates, B={args.n_boot}, "
          f"{time.perf_counter() - start:.0f} s; acceptance band +-{100 * band:.1f} pp "
          f"(2 Monte-Carlo SE); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
