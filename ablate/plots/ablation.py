"""Figures of the rank ablations (statistics.md, figures 1-4), drawn from analysis entries
(ablate.stats.analysis schema): outcome vs log2 k, SVD minus random per k, and the
adjacent contrasts behind the monotonicity verdict. Panels form a grid: one row per
outcome, one column per head (config_label).

    >>> fig, axes = plot_levels([[LevelPanel(entry)]])  # entry: analysis["levels"][i]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ablate.plots.style import (
    RANDOM,
    SEED,
    SVD,
    UNABLATED,
    ForestRow,
    draw_forest,
    draw_intervals,
    finite,
    first_entry,
    format_p,
    interval,
    interval_legend_handles,
    note_panel,
    panel_grid,
    styled,
    suptitle_from,
)

OUTCOME_LABELS = {"correct": "accuracy", "answer_loglik": "answer log-likelihood",
                  "bits_per_byte": "bits per byte"}
RANDOM_OFFSET = 0.12  # x offset of the random-control bars so they do not hide the SVD bars


@dataclass(frozen=True)
class LevelPanel:
    """One panel of figure 1 or 4: a ``levels`` entry, and the range over random draws of
    the draw means per k (low, high), in the entry's unit, when the run has draws."""

    entry: Mapping[str, Any]
    draw_range: Mapping[int, tuple[float, float]] | None = None


def outcome_axis_label(outcome: str, unit: str, *, level: bool = False) -> str:
    # A level of accuracy is a percentage; differences of it are percentage points.
    shown = "%" if level and unit == "pp" else unit
    return f"{OUTCOME_LABELS.get(outcome, outcome)} ({shown})"


def panel_title(entry: Mapping[str, Any]) -> str:
    return f"{entry['config_label']}: {OUTCOME_LABELS.get(entry['outcome'], entry['outcome'])}"


def _rows(entry: Mapping[str, Any], condition: str) -> list[Mapping[str, Any]]:
    rows = [row for row in entry["rows"] if row["condition"] == condition]
    return sorted(rows, key=lambda row: -1 if row["k"] is None else row["k"])


def _draw_level_panel(ax: Any, panel: LevelPanel) -> None:
    entry = panel.entry
    svd, random, plain = (_rows(entry, c) for c in ("svd_rank_k", "random_rank_k", "none"))
    ks = sorted({row["k"] for row in svd + random})
    if not ks:
        note_panel(ax, "no rank-k conditions")
        return
    x_of = {k: math.log2(k) for k in ks}
    if svd:
        xs = [x_of[row["k"]] for row in svd]
        n_seeds = min(len(row["per_seed"]) for row in svd)
        for seed in range(n_seeds if n_seeds > 1 else 0):
            ax.plot(xs, [row["per_seed"][seed] for row in svd], color=SEED, linewidth=0.8,
                    zorder=2)
        ax.plot(xs, [row["estimate"] for row in svd], color=SVD, linewidth=2.2, marker="o",
                markersize=4, zorder=5)
        for row in svd:
            draw_intervals(ax, x_of[row["k"]], interval(row["e1"]), interval(row["e3"]),
                           color=SVD, horizontal=False)
    if random:
        xs = [x_of[row["k"]] + RANDOM_OFFSET for row in random]
        if panel.draw_range:
            band = [panel.draw_range.get(row["k"], (math.nan, math.nan)) for row in random]
            ax.fill_between(xs, [b[0] for b in band], [b[1] for b in band], color=RANDOM,
                            alpha=0.22, linewidth=0, zorder=1)
        ax.plot(xs, [row["estimate"] for row in random], color=RANDOM, linewidth=1.6,
                linestyle="--", marker="s", markersize=3.5, zorder=4)
        for row, x in zip(random, xs, strict=True):
            draw_intervals(ax, x, interval(row["e1"]), interval(row["e3"]), color=RANDOM,
                           horizontal=False)
    ticks = [x_of[k] for k in ks]
    labels = [str(k) for k in ks]
    if plain:
        row = plain[0]
        x_plain = max(ticks) + 1.0
        ax.axvline(max(ticks) + 0.55, color="#cccccc", linewidth=0.8, linestyle=":")
        seeds = [v for v in row["per_seed"] if finite(v)]
        if len(seeds) > 1:
            ax.scatter(np.full(len(seeds), x_plain - 0.15), seeds, s=12, facecolors="none",
                       edgecolors=UNABLATED, linewidths=0.8, zorder=5)
        draw_intervals(ax, x_plain, interval(row["e1"]), interval(row["e3"]), color=UNABLATED,
                       horizontal=False)
        ax.plot([x_plain], [row["estimate"]], marker="D", markersize=5, color=UNABLATED,
                zorder=6)
        ticks.append(x_plain)
        labels.append("none")
    ax.set_xticks(ticks, labels)
    ax.set_xlim(min(x_of.values()) - 0.4, max(ticks) + 0.4)
    ax.set_xlabel("projection rank k (log2 scale; none = unablated)")
    ax.set_ylabel(outcome_axis_label(entry["outcome"], entry["unit"], level=True))
    ax.set_title(panel_title(entry), loc="left")


def _level_legend() -> list[Any]:
    return [Line2D([], [], color=SVD, linewidth=2.2, marker="o", markersize=4,
                   label="SVD top-k (mean)"),
            Line2D([], [], color=SEED, linewidth=0.8, label="SVD, one seed"),
            Line2D([], [], color=RANDOM, linewidth=1.6, linestyle="--", marker="s",
                   markersize=3.5, label="random rank-k (mean)"),
            Patch(color=RANDOM, alpha=0.22, label="range over random draws"),
            Line2D([], [], color=UNABLATED, marker="D", linestyle="none", markersize=5,
                   label="unablated"),
            *interval_legend_handles()[:2]]


@styled
def plot_levels(grid: Sequence[Sequence[LevelPanel | None]]) -> tuple[Figure, np.ndarray]:
    """Figures 1 and 4: an outcome against log2 k. ``grid[row][col]``: rows are outcomes,
    columns heads; None leaves a panel saying the outcome is missing. Each panel shows the
    SVD mean (bold) with E1/E3 bars and one thin line per seed, the random-control mean
    with its bars over the range of the draws, and the unablated point at the right."""
    n_rows, n_cols = len(grid), max(len(row) for row in grid)
    fig, axes = panel_grid(n_rows, n_cols, width=4.2, height=3.2)
    for r, row in enumerate(grid):
        for c in range(n_cols):
            panel = row[c] if c < len(row) else None
            if panel is None:
                note_panel(axes[r, c], "outcome not recorded for this head")
            else:
                _draw_level_panel(axes[r, c], panel)
    first = first_entry(grid)
    suptitle_from(fig, None if first is None else first.entry)
    fig.legend(handles=_level_legend(), loc="outside lower center", ncol=4)
    return fig, axes


def _holm_note(claim: Mapping[str, Any]) -> str:
    parts = []
    if finite(claim.get("p_holm_e1")):
        parts.append(f"E1 {format_p(claim['p_holm_e1'])}")
    if finite(claim.get("p_holm_e3")):
        parts.append(f"E3 {format_p(claim['p_holm_e3'])}")
    return "Holm p: " + " · ".join(parts) if parts else ""


def _draw_q2_panel(ax: Any, entry: Mapping[str, Any]) -> None:
    rows = [ForestRow(label=f"k={claim['k']}", estimate=claim["estimate"], e1=claim["e1"],
                      e3=claim["e3"], per_seed=claim["per_seed"], note=_holm_note(claim))
            for claim in sorted(entry["claims"], key=lambda claim: claim["k"])]
    margin = entry.get("margin")
    draw_forest(ax, rows, bands=[(-margin, margin)] if finite(margin) else [])
    ax.set_xlabel(f"SVD minus random ({entry['unit']})")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_title(panel_title(entry), loc="left")


@styled
def plot_svd_vs_random(grid: Sequence[Sequence[Mapping[str, Any] | None]]
                       ) -> tuple[Figure, np.ndarray]:
    """Figure 2: SVD minus the mean of random rank-k projections per k, from ``q2``
    entries (rows: outcomes, columns: heads), with E1/E3 bars, per-seed dots, Holm p and
    the equivalence margin (shaded) where the run set one."""
    n_rows, n_cols = len(grid), max(len(row) for row in grid)
    height = 0.45 * _max_rows(grid, "claims") + 1.5
    fig, axes = panel_grid(n_rows, n_cols, width=5.2, height=height)
    for r, row in enumerate(grid):
        for c in range(n_cols):
            entry = row[c] if c < len(row) else None
            if entry is None or not entry["claims"]:
                note_panel(axes[r, c], "no SVD vs random contrast for this head")
            else:
                _draw_q2_panel(axes[r, c], entry)
    suptitle_from(fig, first_entry(grid))
    handles = interval_legend_handles(SVD)
    if any(entry is not None and finite(entry.get("margin")) for row in grid for entry in row):
        handles.append(Patch(color="#2e8b57", alpha=0.15, label="equivalence margin (TOST)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    return fig, axes


def _max_rows(grid: Sequence[Sequence[Mapping[str, Any] | None]], key: str) -> int:
    counts = [len(entry.get(key) or []) for row in grid for entry in row if entry is not None]
    return max(counts, default=1)


def monotone_label(monotone: Mapping[str, Any] | None) -> str:
    """Short verdict of the intersection-union test for a panel title."""
    if not monotone:
        return "monotonicity not tested"
    if monotone.get("e3") is True:
        return "monotone across seeds (E3)"
    if monotone.get("e1") is True:
        suffix = "; E3 needs >= 2 seeds" if monotone.get("e3") is None else " only"
        return f"monotone for these checkpoints (E1){suffix}"
    return "monotone not shown"


def _draw_adjacent_panel(ax: Any, entry: Mapping[str, Any]) -> None:
    ks = list(entry["ks"])
    means = np.asarray(entry.get("per_seed_means") or [], dtype=float)
    rows = []
    for contrast in entry["adjacent"]:
        per_seed: Sequence[float] = ()
        if means.ndim == 2 and means.shape[0] > 1:
            low, high = ks.index(contrast["k_low"]), ks.index(contrast["k_high"])
            per_seed = (means[:, high] - means[:, low]).tolist()
        note = (f"one-sided p: E1 {format_p(contrast['p_one_e1'])}"
                + (f" · E3 {format_p(contrast['p_one_e3'])}"
                   if finite(contrast.get("p_one_e3")) else ""))
        rows.append(ForestRow(label=f"k={contrast['k_high']} vs {contrast['k_low']}",
                              estimate=contrast["estimate"], e1=contrast["e1"],
                              e3=contrast["e3"], per_seed=per_seed, note=note))
    draw_forest(ax, rows)
    label = OUTCOME_LABELS.get(entry["outcome"], entry["outcome"])
    ax.set_xlabel(f"{label} at 2k minus at k ({entry['unit']})")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_title(f"{panel_title(entry)}\n{monotone_label(entry.get('monotone'))}", loc="left")


@styled
def plot_adjacent_contrasts(grid: Sequence[Sequence[Mapping[str, Any] | None]]
                            ) -> tuple[Figure, np.ndarray]:
    """Figure 3: each adjacent contrast (outcome at 2k minus at k) from ``q1`` entries
    (rows: outcomes, columns: heads), one-sided p-values, and the intersection-union
    monotonicity verdict in the title."""
    n_rows, n_cols = len(grid), max(len(row) for row in grid)
    height = 0.45 * _max_rows(grid, "adjacent") + 1.7
    fig, axes = panel_grid(n_rows, n_cols, width=5.2, height=height)
    for r, row in enumerate(grid):
        for c in range(n_cols):
            entry = row[c] if c < len(row) else None
            if entry is None or not entry.get("adjacent"):
                note_panel(axes[r, c], "fewer than two ranks: no adjacent contrast")
            else:
                _draw_adjacent_panel(axes[r, c], entry)
    suptitle_from(fig, first_entry(grid))
    handles = interval_legend_handles(SVD)
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    return fig, axes
