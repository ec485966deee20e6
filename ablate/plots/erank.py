"""Figures of effective rank (Q3 and Q4 of ablate.questions): trajectories over iterations per
head, per-seed slopes with the head interaction, depth (violins and the length-adjusted
partial plot), and effective rank against length, the confounding diagnostic.

Arrays come from the run's records (the analysis keeps only summaries): ``values`` is
erank (n_seeds, n_items, T + 1) for M(0) .. M(T); depth panels take the seed-mean erank
of M(T) per item.

    >>> fig, axes = plot_erank_trajectories([ErankPanel(entry, values)])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ablate.plots.style import (
    ForestRow,
    draw_forest,
    draw_intervals,
    finite,
    format_p,
    head_color,
    interval,
    interval_legend_handles,
    note_panel,
    panel_grid,
    resolution_text,
    styled,
    suptitle_from,
)
from ablate.stats.claims import p_resolution


@dataclass(frozen=True)
class ErankPanel:
    """A ``q3`` entry with its erank (n_seeds, n_items, T + 1) and, optionally, E1 and E3
    intervals of the mean at each iteration, each (T + 1, 2)."""

    entry: Mapping[str, Any]
    values: np.ndarray
    e1: np.ndarray | None = None
    e3: np.ndarray | None = None


@dataclass(frozen=True)
class DepthPanel:
    """A ``q4`` entry with per-item arrays (n_items,): seed-mean erank at M(T), depth
    (calculator annotations; NaN when unknown) and n_tokens (prompt + target).
    ``measure`` names another per-item erank (e.g. the mean over latent thoughts)."""

    entry: Mapping[str, Any]
    erank: np.ndarray
    depth: np.ndarray
    n_tokens: np.ndarray
    measure: str | None = None


def _claim(entry: Mapping[str, Any], role: str = "primary") -> Mapping[str, Any] | None:
    return next((c for c in entry.get("claims", []) if c.get("role") == role), None)


def _slope_text(claim: Mapping[str, Any] | None) -> str:
    if claim is None or not finite(claim.get("estimate")):
        return ""
    text = f"slope {claim['estimate']:+.3g}/iteration"
    e3 = interval(claim.get("e3"))
    return text + (f", E3 [{e3[0]:+.3g}, {e3[1]:+.3g}]" if e3 else " (one seed: no E3)")


@styled
def plot_erank_trajectories(panels: Sequence[ErankPanel]) -> tuple[Figure, np.ndarray]:
    """Effective rank of M(t) against iteration t, one panel per head: quantile
    bands over sequences (10-90% and 25-75% of the seed-mean trajectories), one thin line
    per seed, and the mean with E1/E3 bars at each iteration."""
    fig, axes = panel_grid(1, len(panels), width=4.0, height=3.2, sharey=True)
    for index, panel in enumerate(panels):
        ax, color = axes[0, index], head_color(index)
        values = np.asarray(panel.values, dtype=float)
        steps = np.arange(values.shape[2])
        per_sequence = values.mean(axis=0)  # (n_items, T + 1): seed mean of each sequence
        for (low, high), alpha in (((10, 90), 0.12), ((25, 75), 0.22)):
            ax.fill_between(steps, np.percentile(per_sequence, low, axis=0),
                            np.percentile(per_sequence, high, axis=0), color=color,
                            alpha=alpha, linewidth=0)
        trajectories = np.asarray(panel.entry["per_seed_trajectory"], dtype=float)
        if trajectories.shape[0] > 1:
            for trajectory in trajectories:
                ax.plot(steps, trajectory, color=color, linewidth=0.7, alpha=0.55)
        ax.plot(steps, panel.entry["mean_trajectory"], color=color, linewidth=2.2, marker="o",
                markersize=3.5)
        for step in steps:
            e1 = None if panel.e1 is None else interval(panel.e1[step].tolist())
            e3 = None if panel.e3 is None else interval(panel.e3[step].tolist())
            draw_intervals(ax, float(step), e1, e3, color=color, horizontal=False)
        first = min(panel.entry.get("iterations") or [0])
        if first > 0:
            ax.axvspan(-0.5, first - 0.5, color="#f2f2f2", zorder=0, linewidth=0)
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.set_xlim(-0.5, steps[-1] + 0.5)
        ax.set_xlabel("iteration t (state M(t); shaded: not in the slope)")
        ax.set_title(f"{panel.entry['config_label']}\n{_slope_text(_claim(panel.entry))}",
                     loc="left")
    axes[0, 0].set_ylabel("effective rank of M(t)")
    suptitle_from(fig, panels[0].entry if panels else None, site=False)
    handles = [Line2D([], [], color="#444444", linewidth=2.2, marker="o", markersize=3.5,
                      label="mean over seeds"),
               Line2D([], [], color="#444444", linewidth=0.7, label="one seed"),
               Patch(color="#444444", alpha=0.22, label="25-75% of sequences"),
               Patch(color="#444444", alpha=0.12, label="10-90% of sequences"),
               *interval_legend_handles()[:2]]
    fig.legend(handles=handles, loc="outside lower center", ncol=3)
    return fig, axes


@styled
def plot_slopes_by_head(entries: Sequence[Mapping[str, Any]],
                        comparisons: Sequence[Mapping[str, Any]] = ()
                        ) -> tuple[Figure, np.ndarray]:
    """Per-seed slopes (erank per iteration) by head from ``q3`` entries, with the
    mean and E1/E3 bars, then each head difference from ``q3_heads`` and its
    direction-flip test."""
    colors = {entry["config_label"]: head_color(i) for i, entry in enumerate(entries)}
    rows = []
    for entry in entries:
        claim = _claim(entry)
        if claim is None:
            continue
        note = f"Holm p (E3) {format_p(claim.get('p_holm_e3'))}" if finite(
            claim.get("p_holm_e3")) else f"p (E1) {resolution_text(p_resolution(claim, 'p_e1'))}"
        rows.append(ForestRow(label=entry["config_label"], estimate=claim["estimate"],
                              e1=claim["e1"], e3=claim["e3"], per_seed=claim["per_seed"],
                              note=note, color=colors[entry["config_label"]]))
    for comparison in comparisons:
        if not comparison.get("claims"):
            continue
        claim = comparison["claims"][0]
        flip = comparison.get("direction_flip") or {}
        note = f"{comparison['design']}; flip p {format_p(flip.get('p'))}"
        per_seed = claim["per_seed"] if comparison["design"] == "paired" else ()
        rows.append(ForestRow(label=f"{comparison['head_a']} - {comparison['head_b']}",
                              estimate=claim["estimate"], e1=claim["e1"], e3=claim["e3"],
                              per_seed=per_seed, note=note, color="#444444"))
    fig, axes = panel_grid(1, 1, width=6.4, height=0.55 * max(len(rows), 1) + 1.6)
    ax = axes[0, 0]
    if not rows:
        note_panel(ax, "no effective-rank slopes")
        return fig, axes
    draw_forest(ax, rows)
    ax.set_xlabel("slope of effective rank over iterations (erank per iteration)")
    first = entries[0]
    # Two lines: one would run past the figure's right edge (the notes column is there).
    ax.set_title(f"{first['task']} {first['mode']} T={first['n_iterations']}\n"
                 "per-seed slopes by head, and head differences", loc="left")
    fig.legend(handles=interval_legend_handles(), loc="outside lower center", ncol=3)
    return fig, axes


def _residuals(y: np.ndarray, covariate: np.ndarray) -> np.ndarray:
    """y minus its least-squares fit on [1, covariate] (the Frisch-Waugh-Lovell step)."""
    design = np.column_stack([np.ones_like(covariate), covariate])
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ coefficients


def _violins(ax: Any, panel: DepthPanel, color: str) -> None:
    known = np.isfinite(panel.depth)
    depth, erank = panel.depth[known].astype(int), panel.erank[known]
    levels = sorted(set(depth.tolist()))
    groups = [erank[depth == level] for level in levels]
    wide = [i for i, g in enumerate(groups) if g.size >= 2 and np.ptp(g) > 0]
    if wide:
        parts = ax.violinplot([groups[i] for i in wide], positions=[levels[i] for i in wide],
                              widths=0.8, showextrema=False, showmedians=True)
        for body in parts["bodies"]:
            body.set_facecolor(color)
            body.set_alpha(0.3)
        parts["cmedians"].set_color(color)
    for level, group in zip(levels, groups, strict=True):
        ax.scatter(np.full(group.size, level), group, s=5, color=color, alpha=0.6, zorder=3)
    ax.set_xticks(levels, [f"{level}\nn={group.size}" for level, group in
                           zip(levels, groups, strict=True)])
    ax.set_xlabel("depth: calculator annotations <<...>> in the solution")
    measure = panel.measure or f"effective rank of M({panel.entry.get('erank_iteration', 'T')})"
    ax.set_ylabel(f"{measure}, seed mean")
    ax.set_title(f"{panel.entry['config_label']}: erank by depth", loc="left")


def _partial(ax: Any, panel: DepthPanel, color: str) -> None:
    known = np.isfinite(panel.depth)
    log_tokens = np.log(panel.n_tokens[known])
    erank, depth = panel.erank[known], panel.depth[known]
    adjusted = bool(panel.entry.get("length_adjusted")) and np.ptp(log_tokens) > 0
    if adjusted:
        erank, depth = _residuals(erank, log_tokens), _residuals(depth, log_tokens)
    ax.scatter(depth, erank, s=7, color=color, alpha=0.6)
    claim = _claim(panel.entry)
    if claim is not None and finite(claim.get("estimate")):
        xs = np.linspace(depth.min(), depth.max(), 2)
        # Residuals have mean zero, so the fitted line passes through the origin.
        intercept = 0.0 if adjusted else float(erank.mean() - claim["estimate"] * depth.mean())
        ax.plot(xs, intercept + claim["estimate"] * xs, color="#222222", linewidth=1.5)
        e1, e3 = interval(claim.get("e1")), interval(claim.get("e3"))
        text = f"slope {claim['estimate']:+.3g}"
        text += f"\nE1 [{e1[0]:+.3g}, {e1[1]:+.3g}]" if e1 else ""
        text += f"\nE3 [{e3[0]:+.3g}, {e3[1]:+.3g}]" if e3 else "\nE3: n/a"
        ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize=7.5)
    if adjusted:
        ax.set_xlabel("depth, residual after log n_tokens")
        ax.set_ylabel("erank, residual after log n_tokens")
        ax.set_title(f"{panel.entry['config_label']}: length-adjusted (partial)", loc="left")
    else:
        ax.set_xlabel("depth (calculator annotations)")
        ax.set_ylabel("effective rank, seed mean")
        ax.set_title(f"{panel.entry['config_label']}: length constant, not adjusted",
                     loc="left")


@styled
def plot_depth(panels: Sequence[DepthPanel]) -> tuple[Figure, np.ndarray]:
    """Per head, effective rank of M(T) by depth (violins with n per depth),
    and below it the partial plot: erank and depth each residualised on log n_tokens,
    with the adjusted slope and its E1/E3 intervals."""
    fig, axes = panel_grid(2, len(panels), width=4.2, height=3.0)
    for index, panel in enumerate(panels):
        if not np.isfinite(panel.depth).any():
            note_panel(axes[0, index], "depth unknown for every item")
            note_panel(axes[1, index], "")
            continue
        _violins(axes[0, index], panel, head_color(index))
        _partial(axes[1, index], panel, head_color(index))
    suptitle_from(fig, panels[0].entry if panels else None, site=False)
    return fig, axes


@styled
def plot_erank_vs_length(panels: Sequence[DepthPanel]) -> tuple[Figure, np.ndarray]:
    """Effective rank of M(T) against n_tokens (log scale), coloured by depth:
    if rank rises with length, an unadjusted depth association is confounded."""
    fig, axes = panel_grid(1, len(panels), width=4.2, height=3.2, sharey=True)
    scatter = None
    for index, panel in enumerate(panels):
        ax = axes[0, index]
        known = np.isfinite(panel.depth)
        if (~known).any():
            ax.scatter(panel.n_tokens[~known], panel.erank[~known], s=8, color="#bbbbbb",
                       label="depth unknown")
        scatter = ax.scatter(panel.n_tokens[known], panel.erank[known], s=9,
                             c=panel.depth[known], cmap="viridis")
        ax.set_xscale("log")
        ax.set_xlabel("n_tokens (prompt + target, log scale)")
        rho = panel.entry.get("erank_length_spearman")
        rho_text = f"Spearman(erank, n_tokens) = {rho:+.2f}" if finite(rho) else ""
        ax.set_title(f"{panel.entry['config_label']}\n{rho_text}", loc="left")
    axes[0, 0].set_ylabel("effective rank of M(T), seed mean")
    suptitle_from(fig, panels[0].entry if panels else None, site=False)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes[0, -1], label="depth (annotations)")
    return fig, axes
