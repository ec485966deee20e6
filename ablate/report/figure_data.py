"""Arrays the figures need that the analysis dict only summarises, taken from the run's
records with the same selections and alignment as ablate.stats: the spread of the random
draws per k, erank trajectories per head or latent-thought profiles (with per-step
intervals of the mean), and per-item erank, depth and length.

    >>> panel = erank_panel(run.records, run.analysis["q3"][0], settings)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ablate.plots import DepthPanel, ErankPanel
from ablate.report.run import AnalysisSettings
from ablate.stats import mean_interval
from ablate.stats.erank_analysis import ERANK
from ablate.stats.frames import item_covariates, pivot_draws, pivot_erank, select
from ablate.stats.latent_analysis import LATENT_ERANK

GROUP_KEYS = ("config_label", "task", "mode", "n_iterations")
# outcome -> factor from the record column to the analysis unit (accuracy is in pp).
SCALES = {"correct": 100.0, "answer_loglik": 1.0}


def group_rows(records: pd.DataFrame, entry: Mapping[str, Any], **selection: Any
               ) -> pd.DataFrame:
    """Records of the entry's group (config_label, task, mode, T), further selected."""
    return select(records, **{key: entry[key] for key in GROUP_KEYS}, **selection)


def draw_range(records: pd.DataFrame, entry: Mapping[str, Any]
               ) -> dict[int, tuple[float, float]] | None:
    """For a ``levels`` entry: per k, (min, max) over random draws of the draw's mean over
    seeds and items, in the entry's unit; None when the run has no random draws."""
    outcome = entry["outcome"]
    rows = group_rows(records, entry, intervention="random_rank_k", site=entry["site"])
    if rows.empty:
        return None
    ranges = {}
    for k in sorted({int(k) for k in rows["k"].dropna()}):
        if outcome == "bits_per_byte":
            nats = pivot_draws(rows, "solution_nats", k=k).values  # (S, D, n)
            n_bytes = pivot_draws(rows, "solution_bytes", k=k).values
            # A ratio of sums per seed, as the analysis computes bits per byte.
            means = (nats.sum(axis=2) / math.log(2) / n_bytes.sum(axis=2)).mean(axis=0)
        else:
            values = pivot_draws(rows, outcome, k=k).values
            means = SCALES.get(outcome, 1.0) * values.mean(axis=(0, 2))
        if np.all(np.isfinite(means)):
            ranges[k] = (float(means.min()), float(means.max()))
    return ranges or None


def erank_panel(records: pd.DataFrame, entry: Mapping[str, Any],
                settings: AnalysisSettings, column: str = ERANK) -> ErankPanel:
    """A ``q3`` entry (or, with ``column="latent_erank"``, a ``q5`` entry) with its
    unablated erank array (n_seeds, n_items, n_steps) and E1/E3 intervals of the mean at
    each step (drawn from their own generator, so the analysis is unaffected)."""
    values = pivot_erank(group_rows(records, entry, intervention="none"), column=column).values
    rng = np.random.default_rng([settings.seed, 5])
    e1 = np.full((values.shape[2], 2), np.nan)
    e3 = np.full((values.shape[2], 2), np.nan)
    if values.shape[1] >= 2 and np.all(np.isfinite(values)):
        for step in range(values.shape[2]):
            result = mean_interval(values[:, :, step], rng=rng, level=settings.level,
                                   n_boot=settings.n_boot)
            e1[step], e3[step] = result.e1, result.e3
    return ErankPanel(entry=entry, values=values, e1=e1, e3=e3)


def depth_panel(records: pd.DataFrame, entry: Mapping[str, Any]) -> DepthPanel:
    """A ``q4`` entry with the seed-mean erank of M(T), depth and n_tokens per item."""
    return _depth_panel(records, entry, ERANK, lambda values: values[:, :, -1])


def latent_depth_panel(records: pd.DataFrame, entry: Mapping[str, Any]) -> DepthPanel:
    """A ``q5`` entry with the seed-mean of the mean latent erank, depth and n_tokens per
    item; the panel's entry holds only the depth claims and summary, as a ``q4`` entry
    would, so ``plot_depth`` draws the depth slope."""
    depth = entry.get("depth") or {}
    view = {**{key: entry[key] for key in GROUP_KEYS},
            "claims": [c for c in entry["claims"] if c.get("aspect") == "depth"],
            "length_adjusted": depth.get("length_adjusted"),
            "erank_length_spearman": depth.get("erank_length_spearman")}
    return _depth_panel(records, view, LATENT_ERANK, lambda values: values.mean(axis=2),
                        measure="mean latent erank")


def _depth_panel(records: pd.DataFrame, entry: Mapping[str, Any], column: str,
                 per_item: Callable[[np.ndarray], np.ndarray],
                 measure: str | None = None) -> DepthPanel:
    """``per_item`` maps erank (n_seeds, n_items, n_steps) to (n_seeds, n_items)."""
    rows = group_rows(records, entry, intervention="none")
    erank = pivot_erank(rows, column=column)
    covariates = item_covariates(rows, erank.item_ids)
    return DepthPanel(entry=entry, erank=per_item(erank.values).mean(axis=0),
                      depth=covariates["depth_annotations"].to_numpy(dtype=float),
                      n_tokens=covariates["n_tokens"].to_numpy(dtype=float), measure=measure)
