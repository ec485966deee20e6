"""Figures of the ablations (Q1 and Q2 of ablate.questions), drawn from analysis entries:
an outcome against log2 k for every arm (unablated, each ablation, each control, told apart
by the ``role`` of each levels row), an ablation minus its control per k, and the adjacent
contrasts behind the monotonicity verdict. Panels form a grid: one row per outcome, one
column per head (config_label).

    >>> fig, axes = plot_levels([[LevelPanel(entry)]])  # entry: analysis["levels"][i]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ablate.plots.style import (
    HEAD_COLORS,
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
    resolution_text,
    styled,
    suptitle_from,
)
from ablate.stats.claims import p_resolution

OUTCOME_LABELS = {"correct": "accuracy", "answer_loglik": "answer log-likelihood",
                  "bits_per_byte": "bits per byte"}
RANDOM_OFFSET = 0.12  # x offset of the random-control bars so they do not hide the SVD bars


CONTROL_COLORS = (RANDOM, "#555555", "#b5b5b5")
CONTROL_STYLES = ("--", ":", "-.")


@dataclass(frozen=True)
class LevelPanel:
    """One panel of an outcome against log2 k: a ``levels`` entry, per control arm the range
    over its draws of the draw means per k (low, high) in the entry's unit, and each arm's
    (short, display) names for the legend (default: the arm's name)."""

    entry: Mapping[str, Any]
    draw_range: Mapping[str, Mapping[int, tuple[float, float]]] | None = None
    names: Mapping[str, tuple[str, str]] = field(default_factory=dict)


def outcome_axis_label(outcome: str, unit: str, *, level: bool = False) -> str:
    # A level of accuracy is a percentage; differences of it are percentage points.
    shown = "%" if level and unit == "pp" else unit
    return f"{OUTCOME_LABELS.get(outcome, outcome)} ({shown})"


def panel_title(entry: Mapping[str, Any]) -> str:
    return f"{entry['config_label']}: {OUTCOME_LABELS.get(entry['outcome'], entry['outcome'])}"


def _role(row: Mapping[str, Any]) -> str:
    return row.get("role") or ("unablated" if row["condition"] == "none" else "ablation")


def arms_of(entry: Mapping[str, Any]) -> dict[str, list[str]]:
    """The arms of a ``levels`` entry by role ("ablation", "control"), in row order."""
    arms: dict[str, list[str]] = {"ablation": [], "control": []}
    for row in entry["rows"]:
        if _role(row) in arms and row["condition"] not in arms[_role(row)]:
            arms[_role(row)].append(row["condition"])
    return arms


def _rows(entry: Mapping[str, Any], condition: str) -> list[Mapping[str, Any]]:
    rows = [row for row in entry["rows"] if row["condition"] == condition]
    return sorted(rows, key=lambda row: -1 if row["k"] is None else row["k"])


def _arm_style(role: str, index: int) -> dict[str, Any]:
    """Colour and line of the index-th ablation (solid, SVD blue first) or control (dashed,
    grey first) of a figure."""
    if role == "ablation":
        color = SVD if index == 0 else HEAD_COLORS[1 + (index - 1) % (len(HEAD_COLORS) - 1)]
        return {"color": color, "seed": SEED if index == 0 else color, "linestyle": "-",
                "marker": "o", "linewidth": 2.2, "markersize": 4, "offset": 0.0, "zorder": 5}
    return {"color": CONTROL_COLORS[index % len(CONTROL_COLORS)], "linestyle":
            CONTROL_STYLES[index % len(CONTROL_STYLES)], "marker": "s", "linewidth": 1.6,
            "markersize": 3.5, "offset": RANDOM_OFFSET * (index + 1), "zorder": 4}


def _faint(style: Mapping[str, Any]) -> dict[str, Any]:
    """Per-seed lines of a second ablation: its own colour, faint (the first has SEED)."""
    return {} if style["seed"] == SEED else {"alpha": 0.35}


def _draw_arm(ax: Any, panel: LevelPanel, arm: str, rows: list[Mapping[str, Any]],
              x_of: Mapping[int, float], style: dict[str, Any], role: str) -> None:
    xs = [x_of[row["k"]] + style["offset"] for row in rows]
    color = style["color"]
    if role == "ablation":
        n_seeds = min(len(row["per_seed"]) for row in rows)
        for seed in range(n_seeds if n_seeds > 1 else 0):
            ax.plot(xs, [row["per_seed"][seed] for row in rows], color=style["seed"],
                    linewidth=0.8, zorder=2, **_faint(style))
    elif panel.draw_range and panel.draw_range.get(arm):
        band = [panel.draw_range[arm].get(row["k"], (math.nan, math.nan)) for row in rows]
        ax.fill_between(xs, [b[0] for b in band], [b[1] for b in band], color=color,
                        alpha=0.22, linewidth=0, zorder=1)
    ax.plot(xs, [row["estimate"] for row in rows], color=color, linewidth=style["linewidth"],
            linestyle=style["linestyle"], marker=style["marker"],
            markersize=style["markersize"], zorder=style["zorder"])
    for row, x in zip(rows, xs, strict=True):
        draw_intervals(ax, x, interval(row["e1"]), interval(row["e3"]), color=color,
                       horizontal=False)


def _draw_point(ax: Any, x: float, row: Mapping[str, Any], color: str, marker: str) -> None:
    """One condition without k (or the unablated one) right of the k axis."""
    seeds = [v for v in row["per_seed"] if finite(v)]
    if len(seeds) > 1:
        ax.scatter(np.full(len(seeds), x - 0.15), seeds, s=12, facecolors="none",
                   edgecolors=color, linewidths=0.8, zorder=5)
    draw_intervals(ax, x, interval(row["e1"]), interval(row["e3"]), color=color,
                   horizontal=False)
    ax.plot([x], [row["estimate"]], marker=marker, markersize=5, color=color, zorder=6)


def _draw_level_panel(ax: Any, panel: LevelPanel) -> None:
    entry = panel.entry
    arms = arms_of(entry)
    ks = sorted({row["k"] for row in entry["rows"]
                 if _role(row) != "unablated" and row["k"] is not None})
    plain = _rows(entry, "none")
    ranked = {role: [arm for arm in names if any(r["k"] is not None for r in _rows(entry, arm))]
              for role, names in arms.items()}
    points = [(arm, role) for role, names in arms.items() for arm in names
              if arm not in ranked[role]]
    if not ks and not points:
        note_panel(ax, "no rank-k conditions")
        return
    x_of = {k: math.log2(k) for k in ks}
    for role, names in ranked.items():
        for index, arm in enumerate(names):
            _draw_arm(ax, panel, arm, [row for row in _rows(entry, arm) if row["k"] is not None],
                      x_of, _arm_style(role, index), role)
    ticks = [x_of[k] for k in ks]
    labels = [str(k) for k in ks]
    right = max(ticks) if ticks else -1.0
    if ticks and (points or plain):
        ax.axvline(right + 0.55, color="#cccccc", linewidth=0.8, linestyle=":")
    for role, names in arms.items():
        for index, arm in enumerate(names):
            if (arm, role) not in points:
                continue
            right += 1.0
            style = _arm_style(role, index)
            _draw_point(ax, right, _rows(entry, arm)[0], style["color"], style["marker"])
            ticks.append(right)
            labels.append(panel.names.get(arm, (arm, arm))[0])
    if plain:
        right += 1.0
        _draw_point(ax, right, plain[0], UNABLATED, "D")
        ticks.append(right)
        labels.append("none")
    ax.set_xticks(ticks, labels)
    ax.set_xlim(min(ticks) - 0.4, max(ticks) + 0.4)
    ax.set_xlabel("projection rank k (log2 scale; none = unablated)")
    ax.set_ylabel(outcome_axis_label(entry["outcome"], entry["unit"], level=True))
    ax.set_title(panel_title(entry), loc="left")


def _level_legend(panels: Sequence[LevelPanel]) -> list[Any]:
    names: dict[str, tuple[str, str]] = {}
    arms: dict[str, list[str]] = {"ablation": [], "control": []}
    for panel in panels:
        names.update(panel.names)
        for role, found in arms_of(panel.entry).items():
            arms[role] += [arm for arm in found if arm not in arms[role]]
    handles: list[Any] = []
    for index, arm in enumerate(arms["ablation"]):
        style, (short, display) = _arm_style("ablation", index), names.get(arm, (arm, arm))
        handles += [Line2D([], [], color=style["color"], linewidth=2.2, marker="o",
                           markersize=4, label=f"{display} (mean)"),
                    Line2D([], [], color=style["seed"], linewidth=0.8,
                           label=f"{short}, one seed", **_faint(style))]
    for index, arm in enumerate(arms["control"]):
        style, (short, display) = _arm_style("control", index), names.get(arm, (arm, arm))
        handles += [Line2D([], [], color=style["color"], linewidth=1.6,
                           linestyle=style["linestyle"], marker="s", markersize=3.5,
                           label=f"{display} (mean)"),
                    Patch(color=style["color"], alpha=0.22, label=f"range over {short} draws")]
    return [*handles, Line2D([], [], color=UNABLATED, marker="D", linestyle="none",
                             markersize=5, label="unablated"),
            *interval_legend_handles()[:2]]


@styled
def plot_levels(grid: Sequence[Sequence[LevelPanel | None]]) -> tuple[Figure, np.ndarray]:
    """An outcome against log2 k. ``grid[row][col]``: rows are outcomes, columns heads;
    None leaves a panel saying the outcome is missing. Each panel shows each ablation's
    mean (bold; SVD blue first) with E1/E3 bars and one thin line per seed, each control's
    mean (dashed) with its bars over the range of its draws, conditions without k and the
    unablated point at the right."""
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
    panels = [panel for row in grid for panel in row if panel is not None]
    # Two legend columns per panel column, so a one-head figure keeps its legend inside.
    fig.legend(handles=_level_legend(panels), loc="outside lower center",
               ncol=min(4, 2 * n_cols))
    return fig, axes


# Checks (ablate.stats.claims): no p, and no numbers unless an identity check failed.
CHECK_NOTES = {"identity_check_passed": "identity check passed (k >= d)",
               "identity_check_failed": "IDENTITY CHECK FAILED",
               "zero_up_to_rounding": "no difference in any item"}


def _holm_note(claim: Mapping[str, Any]) -> str:
    if claim.get("verdict") in CHECK_NOTES:
        return CHECK_NOTES[claim["verdict"]]
    parts = []
    if finite(claim.get("p_holm_e1")):
        parts.append(f"E1 {resolution_text(p_resolution(claim, 'p_holm_e1'))}")
    if finite(claim.get("p_holm_e3")):
        parts.append(f"E3 {format_p(claim['p_holm_e3'])}")
    return "Holm p: " + " · ".join(parts) if parts else ""


def _forest_row(claim: Mapping[str, Any]) -> ForestRow:
    """A Q2 row; a passed check is drawn as its label and note only (its numbers are
    rounding noise)."""
    label, note = f"k={claim['k']}", _holm_note(claim)
    if claim.get("verdict") in ("identity_check_passed", "zero_up_to_rounding"):
        return ForestRow(label=label, estimate=None, e1=None, e3=None, note=note)
    return ForestRow(label=label, estimate=claim["estimate"], e1=claim["e1"], e3=claim["e3"],
                     per_seed=claim["per_seed"], note=note)


def _draw_q2_panel(ax: Any, entry: Mapping[str, Any], names: tuple[str, str]) -> None:
    rows = [_forest_row(claim) for claim in sorted(entry["claims"], key=lambda c: c["k"])]
    margin = entry.get("margin")
    draw_forest(ax, rows, bands=[(-margin, margin)] if finite(margin) else [])
    ax.set_xlabel(f"{names[0]} minus {names[1]} ({entry['unit']})")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_title(panel_title(entry), loc="left")


@styled
def plot_svd_vs_random(grid: Sequence[Sequence[Mapping[str, Any] | None]],
                       names: tuple[str, str] = ("SVD", "random")) -> tuple[Figure, np.ndarray]:
    """An ablation minus the mean of its control's draws per k (``names``: their short
    names, SVD and random by default), from ``q2`` entries (rows: outcomes, columns:
    heads), with E1/E3 bars, per-seed dots, Holm p and the equivalence margin (shaded)
    where the run set one."""
    n_rows, n_cols = len(grid), max(len(row) for row in grid)
    height = 0.45 * _max_rows(grid, "claims") + 1.5
    fig, axes = panel_grid(n_rows, n_cols, width=5.2, height=height)
    for r, row in enumerate(grid):
        for c in range(n_cols):
            entry = row[c] if c < len(row) else None
            if entry is None or not entry["claims"]:
                note_panel(axes[r, c], f"no {names[0]} vs {names[1]} contrast for this head")
            else:
                _draw_q2_panel(axes[r, c], entry, names)
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
        e1 = format_p(contrast["p_one_e1"], n_boot=contrast.get("n_boot"), one_sided=True)
        note = (f"one-sided p: E1 {e1}"
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
    """Each adjacent contrast (outcome at 2k minus at k) from ``q1`` entries
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
