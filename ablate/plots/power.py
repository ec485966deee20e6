"""Figures about what the data can detect and how the methods were validated (the report's
power section and validation appendix): variance components with the minimum detectable
effect, and coverage / false-positive rate by method from bench/stats_validation.py.

    >>> fig, axes = plot_variance_components(analysis["power"]["variance_components"],
    ...                                      analysis["power"]["mde_table"])  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ablate.errors import AblateError
from ablate.plots.style import (
    VARIANCE_COLORS,
    ZERO,
    finite,
    head_color,
    new_figure,
    note_panel,
    panel_grid,
    styled,
)

VALIDATION_COLUMNS = ("method", "coverage_e3_truth", "fpr_e3_null")


def _component_label(component: Mapping[str, Any]) -> str:
    site = f" @ {component['site']}" if component.get("site") else ""
    return f"{component.get('config_label', '')}{site}: {component['quantity']}"


@styled
def plot_variance_components(components: Sequence[Mapping[str, Any]],
                             mde_table: Sequence[Mapping[str, Any]]
                             ) -> tuple[Figure, np.ndarray]:
    """Left: the share of seed, problem and residual variance of each per-item
    quantity (``power.variance_components``). Right: the minimum detectable effect at 80%
    power in seed-to-seed SDs against the number of seeds (``power.mde_table``), with the
    seed counts of this run marked."""
    height = max(3.0, 0.3 * len(components) + 1.6)
    fig = new_figure(11.0, height)
    axes = fig.subplots(1, 2, squeeze=False, gridspec_kw={"width_ratios": [1.8, 1.0]})
    ax = axes[0, 0]
    if components:
        labels, positions = [], np.arange(len(components))[::-1]
        for y, component in zip(positions, components, strict=True):
            parts = {name: component.get(name) for name in VARIANCE_COLORS}
            labels.append(_component_label(component))
            if not all(finite(v) for v in parts.values()):
                ax.text(0.01, y, "one seed: not split", va="center", fontsize=7, color=ZERO)
                continue
            total = sum(parts.values())
            left = 0.0
            for name, value in parts.items():
                share = value / total if total > 0 else 0.0
                ax.barh(y, share, left=left, color=VARIANCE_COLORS[name], height=0.7)
                left += share
        ax.set_yticks(positions, labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of item-level variance")
        ax.set_title("share of variance by source", loc="left")
        ax.grid(axis="y", visible=False)
        fig.legend(handles=[Patch(color=color, label=name)
                            for name, color in VARIANCE_COLORS.items()],
                   loc="outside lower center", ncol=3)
    else:
        note_panel(ax, "no variance components in the analysis")
    ax = axes[0, 1]
    table = [row for row in mde_table if finite(row.get("mde_in_seed_sd"))]
    if table:
        seeds = [int(row["n_seeds"]) for row in table]
        mde = [float(row["mde_in_seed_sd"]) for row in table]
        ax.plot(seeds, mde, color=ZERO, marker="o", markersize=4)
        for x, y in zip(seeds, mde, strict=True):
            if x in (3, 4, 5):
                ax.annotate(f"{y:.2f}", xy=(x, y), xytext=(5, 4), textcoords="offset points",
                            fontsize=7.5)
        used = sorted({int(c["n_seeds"]) for c in components if c.get("n_seeds")})
        for index, n in enumerate(used):
            ax.axvline(n, color=head_color(index + 1), linewidth=1.2, linestyle="--",
                       label=f"this run: {n} seed{'s' if n != 1 else ''}")
        ax.axvline(5, color="#2e8b57", linewidth=1.0, linestyle=":", label="recommended: 5")
        ax.set_yscale("log")
        ticks = [t for t in (1, 2, 3, 5, 10, 20) if min(mde) / 1.5 <= t <= max(mde) * 1.5]
        ax.set_yticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xticks(seeds)
        ax.set_xlabel("training seeds S")
        ax.set_ylabel("minimum detectable effect (seed SDs)")
        ax.set_title("MDE at 80% power", loc="left")
        ax.legend(loc="upper right")
    else:
        note_panel(ax, "no minimum-detectable-effect table")
    return fig, axes


@styled
def plot_validation(table: pd.DataFrame) -> tuple[Figure, np.ndarray]:
    """Per method, coverage of the E3 truth (filled; open: of the method's own
    truth) and the false-positive rate under an E3 null, one dot per simulated cell, with
    the nominal rate and its +-2 Monte-Carlo SE acceptance band."""
    missing = [c for c in VALIDATION_COLUMNS if c not in table.columns]
    if missing:
        raise AblateError(f"validation table lacks column(s) {', '.join(missing)}; pass the "
                          "CSV written by bench/stats_validation.py")
    methods = list(dict.fromkeys(table["method"].astype(str)))
    fig, axes = panel_grid(1, 2, width=4.6, height=0.5 * len(methods) + 1.8, sharey=True)
    replicates = table["replicates"].dropna() if "replicates" in table else pd.Series([])
    n = float(replicates.min()) if len(replicates) else math.nan
    band = 2 * math.sqrt(0.95 * 0.05 / n) if finite(n) and n > 0 else None
    positions = {method: i for i, method in enumerate(methods[::-1])}
    studies = list(dict.fromkeys(table["study"].astype(str))) if "study" in table else [""]
    colors = {study: head_color(i) for i, study in enumerate(studies)}
    for ax, column, nominal, title in (
            (axes[0, 0], "coverage_e3_truth", 0.95, "coverage of the E3 truth"),
            (axes[0, 1], "fpr_e3_null", 0.05, "false-positive rate (E3 truth 0)")):
        if band is not None:
            ax.axvspan(nominal - band, nominal + band, color="#2e8b57", alpha=0.12, linewidth=0)
        ax.axvline(nominal, color=ZERO, linewidth=0.8, linestyle="--")
        for method, group in table.groupby("method", sort=False):
            jitter = np.linspace(-0.25, 0.25, len(group)) if len(group) > 1 else np.zeros(1)
            y = positions[str(method)] + jitter
            study = (group["study"].astype(str) if "study" in group
                     else pd.Series([""] * len(group), index=group.index))
            shown = group[column].notna().to_numpy()
            ax.scatter(group[column][shown], y[shown], s=14, alpha=0.8, zorder=3,
                       color=[colors[s] for s in study[shown]])
            if column == "coverage_e3_truth" and "coverage_own_truth" in group:
                own = group["coverage_own_truth"].notna().to_numpy()
                ax.scatter(group["coverage_own_truth"][own], y[own], s=20, facecolors="none",
                           edgecolors=[colors[s] for s in study[own]], zorder=4)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel(title)
        ax.grid(axis="y", visible=False)
    handles = [Line2D([], [], marker="o", linestyle="none", color=colors[study],
                      label=f"{study} study" if study else "cell") for study in studies]
    handles.append(Line2D([], [], marker="o", linestyle="none", markerfacecolor="none",
                          color=ZERO, label="coverage of the method's own truth"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    axes[0, 0].set_yticks(list(positions.values()), list(positions.keys()))
    band_text = f"; green: +-{band:.3f} (2 Monte-Carlo SE, {int(n)} replicates)" if band else ""
    fig.suptitle(f"One dot per simulated cell; nominal coverage 0.95, false-positive rate "
                 f"0.05{band_text}", fontsize=9.5)
    return fig, axes
