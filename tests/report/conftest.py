"""Tiny synthetic runs in the store's layout (manifest + one Parquet file per job), built
from known probabilities so every report family has data: two heads whose effective rank
moves in opposite directions over iterations, SVD better than random at every k, and
effective rank that rises with depth and length."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ablate.report import ReportResult, RunAnalysis, analyze_run, write_report
from ablate.store import RunStore

HEADS = ("multiprobe", "collapse")
ERANK_SLOPE = {"multiprobe": 0.25, "collapse": -0.2}


def job_id(head: str, seed: int, n_iterations: int, eval_seed: int = 0) -> str:
    return f"{head}-s{seed}__gsm8k-test-teacher_forced__T{n_iterations}__e{eval_seed}"


METRICS = ("answer_loglik", "solution_nats", "bits_per_byte", "tf_exact_match", "correct")


def job_records(head: str, seed: int, *, n_items: int, ks: tuple[int, ...], n_draws: int,
                n_iterations: int, rng: np.random.Generator, eval_seed: int = 0,
                identity_k: int | None = None, mode: str = "teacher_forced") -> pd.DataFrame:
    """Every condition of one job (checkpoint x task x T x eval seed) over n_items items;
    at ``identity_k`` (k = d) every rank cut returns the unablated outcome of each item.
    Generative records' ``correct`` is their strict outcome; the numeric one also counts
    every fourth item right."""
    item_rng = np.random.default_rng(1234)  # items are shared by every seed and head
    difficulty = item_rng.normal(0, 1, n_items)
    depth = item_rng.integers(1, 6, n_items)
    n_target = 20 + 8 * depth + item_rng.integers(0, 6, n_items)
    seed_shift = rng.normal(0, 0.2)
    conditions: list[tuple[str, int | None, int | None, float]] = [("none", None, None, 2.0)]
    for k in ks:
        conditions.append(("svd_rank_k", k, None, 0.6 * np.log2(k) - 1.0))
        conditions += [("random_rank_k", k, d, 0.6 * np.log2(k) - 2.0) for d in range(n_draws)]
    rows: list[dict[str, Any]] = []
    for intervention, k, draw, shift in conditions:
        p = 1 / (1 + np.exp(-(difficulty + shift + seed_shift)))
        correct = rng.random(n_items) < p
        for j in range(n_items):
            steps = np.arange(n_iterations + 1)
            trajectory = (2.0 + 0.3 * depth[j] + 0.4 * np.log(n_target[j])
                          + ERANK_SLOPE[head] * steps + rng.normal(0, 0.05, steps.size))
            nats = float(n_target[j] * (1.5 - 0.1 * shift) + rng.normal(0, 1))
            condition = "none" if k is None else f"{intervention}@head_input:k={k}" + (
                "" if draw is None else f":draw={draw}")
            rows.append({
                "job_id": job_id(head, seed, n_iterations, eval_seed),
                "checkpoint": f"ckpt/{head}-seed{seed}",
                "config_label": head, "train_seed": seed, "eval_seed": eval_seed, "task": "gsm8k",
                "split": "test", "mode": mode, "n_iterations": n_iterations,
                "condition": condition, "intervention": intervention,
                "site": "none" if k is None else "head_input", "k": k, "draw": draw,
                "item_id": f"gsm8k-{j:04d}", "doc_hash": f"{j:016x}", "prompt_hash": f"{j:016x}",
                "target_hash": f"{j:016x}", "depth_annotations": int(depth[j]),
                "depth_lines": int(depth[j]) + j % 2, "n_prompt_tokens": 40,
                "n_target_tokens": int(n_target[j]),
                "answer_loglik": float(-2.0 + shift + rng.normal(0, 0.5)),
                "solution_nats": nats, "solution_bytes": int(n_target[j]),
                "bits_per_byte": nats / np.log(2) / int(n_target[j]),
                "tf_exact_match": bool(correct[j]), "prediction": "",
                "correct": float(correct[j]), "erank_per_iter": trajectory.tolist(),
                **({} if mode != "generative" else {
                    "correct_strict": bool(correct[j]), "correct_flexible": bool(correct[j]),
                    "correct_numeric": bool(correct[j]) or j % 4 == 0}),
            })
    frame = pd.DataFrame(rows)
    if identity_k is not None:
        plain = frame[frame["intervention"] == "none"].set_index("item_id")
        cut = (frame["k"] == identity_k).to_numpy()
        for column in METRICS:
            frame.loc[cut, column] = plain.loc[frame.loc[cut, "item_id"], column].to_numpy()
    for column in ("k", "draw", "depth_annotations", "depth_lines"):
        frame[column] = frame[column].astype("Int64")
    return frame


def write_run(run_dir: Path, *, seeds: tuple[int, ...] = (0, 1, 2), heads: tuple[str, ...] = HEADS,
              n_items: int = 16, ks: tuple[int, ...] = (1, 2, 4), n_draws: int = 2,
              n_iterations: int = 3, skip_jobs: int = 0, n_boot: int = 100,
              eval_seeds: tuple[int, ...] = (0,), d: int | None = 16,
              identity_k: int | None = None, mode: str = "teacher_forced",
              options: dict[str, Any] | None = None) -> Path:
    """A run directory whose manifest lists every (head, seed, eval seed) job; the last
    ``skip_jobs`` jobs get no records (an incomplete run). The checkpoints' matrix size
    ``d`` goes into the manifest (None: a manifest from before d was recorded); with the
    default ks no rank cut keeps the states. ``n_boot`` < 2000 makes it a smoke run.
    ``identity_k``: the k whose rank cuts return the unablated outcomes (an exact identity).
    ``mode`` and the task's ``options`` go into the records and the config."""
    jobs = [(head, seed, e) for head in heads for seed in seeds for e in eval_seeds]
    config = {
        "version": 1, "name": run_dir.name, "description": "synthetic run for report tests",
        "checkpoints": [{"path": f"ckpt/{h}-seed{s}", "label": h, "train_seed": s}
                        for h in heads for s in seeds],
        "interventions": [{"name": "svd_rank_k", "site": "head_input", "k": list(ks)},
                          {"name": "random_rank_k", "site": "head_input", "k": list(ks),
                           "draws": n_draws}],
        "tasks": [{"name": "gsm8k", "split": "test", "limit": n_items,
                   "mode": mode, "few_shot": 0, **({"options": options} if options else {})}],
        "eval_seeds": list(eval_seeds), "iterations": [n_iterations], "batch_size": 8,
        "device": "cpu",
        "stats": {"tost_margin": 0.05, "level": 0.95, "n_boot": n_boot, "seed": 7,
                  "smoke": n_boot < 2000},
    }
    ids = [job_id(h, s, n_iterations, e) for h, s, e in jobs]
    rng = np.random.default_rng(0)
    stated = {"n_heads": {"value": 8, "source": "the n_heads override", "how": "stated"},
              "attention": {"value": "frobenius", "source": "results.json (config)",
                            "how": "stated"},
              "n_iterations": {"value": 8, "source": "ablate default", "how": "default"}}
    checkpoints = [{**c, "format": "research", "settings": stated, "assumed": [],
                    **({} if d is None else {"d": d})} for c in config["checkpoints"]]
    with RunStore.open(run_dir, config=config, config_hash=f"hash-{run_dir.name}",
                       job_ids=ids, experiment_file="experiments/synthetic.toml",
                       checkpoints=checkpoints) as store:
        for head, seed, eval_seed in jobs[:len(jobs) - skip_jobs]:
            store.write(job_id(head, seed, n_iterations, eval_seed),
                        job_records(head, seed, n_items=n_items, ks=ks, n_draws=n_draws,
                                    n_iterations=n_iterations, rng=rng, eval_seed=eval_seed,
                                    identity_k=identity_k, mode=mode))
    return run_dir


def write_validation_csv(path: Path) -> Path:
    """A small table in the format of bench/stats_validation.py (one row per cell x method)."""
    rows = []
    for n_seeds, (method, coverage, fpr) in itertools.product((3, 5), (
            ("E1 paired problem bootstrap", 0.62, 0.31),
            ("E3 two-way (seeds and problems)", 0.95, 0.05),
            ("t test on per-seed estimates", 0.91, 0.08))):
        rows.append({"study": "binary", "n_seeds": n_seeds, "n_items": 200, "sd_seed": 0.3,
                     "sd_problem_effect": 1.5, "method": method, "replicates": 100,
                     "coverage_own_truth": coverage, "coverage_own_truth_se": 0.02,
                     "coverage_e3_truth": coverage, "fpr_e3_null": fpr, "fpr_e3_null_se": 0.02,
                     "coverage_in_band": abs(coverage - 0.95) < 0.044,
                     "fpr_in_band": abs(fpr - 0.05) < 0.044})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete run: two heads x three seeds."""
    return write_run(tmp_path_factory.mktemp("runs") / "synthetic")


@pytest.fixture(scope="session")
def run(run_dir: Path) -> RunAnalysis:
    return analyze_run(run_dir)


@pytest.fixture(scope="session")
def validation_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_validation_csv(tmp_path_factory.mktemp("bench") / "stats_validation.csv")


@pytest.fixture(scope="session")
def report(run: RunAnalysis, validation_csv: Path,
           tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """The report of the complete run, with the validation appendix."""
    return write_report(run, tmp_path_factory.mktemp("reports") / "synthetic",
                        validation=validation_csv)
