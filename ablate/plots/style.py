"""Shared look of every report figure: the Agg backend, colours, panel grids and the forest
rows (estimate, E1 and E3 intervals, per-seed dots) that several figures draw.

Convention in every figure: E1 ("these checkpoints": problems random, seeds fixed) is the
short thick bar, E3 ("a new training run": seeds and problems random) the long thin bar
with caps, per-seed values are small open dots or thin lines.

    >>> fig, axes = panel_grid(1, 2)
    >>> draw_forest(axes[0, 0], [ForestRow("k=1", 2.0, (1.0, 3.0), (0.5, 3.5), (1.8, 2.2))])
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ablate.stats.pvalues import PResolution, resolve_p
from ablate.stats.pvalues import format_p as pvalue_number

SVD = "#1f5fa8"
RANDOM = "#8a8a8a"
UNABLATED = "#d0721f"
SEED = "#9db9d8"
ZERO = "#444444"
HEAD_COLORS = ("#1f5fa8", "#c0392b", "#2e8b57", "#8e44ad", "#d0721f", "#555555")
VARIANCE_COLORS = {"seed": "#c0392b", "problem": "#1f5fa8", "residual": "#bbbbbb"}

STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e6e6",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    # Stable ids and no dates: the same data gives the same SVG bytes.
    "svg.hashsalt": "ablate",
    "svg.fonttype": "none",  # text stays text: smaller, searchable SVG files
    "path.simplify": False,
}


P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def figure_style() -> Iterator[None]:
    """Apply the report style to figures built (or saved) inside the block; rcParams are
    read when artists are created and when files are written, not when figures are."""
    with matplotlib.rc_context(STYLE):
        yield


def styled(function: Callable[P, R]) -> Callable[P, R]:
    """Run a plot function inside ``figure_style`` without touching global rcParams."""
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with figure_style():
            return function(*args, **kwargs)
    return wrapper


def new_figure(width: float, height: float) -> Figure:
    """A figure on an Agg canvas, outside pyplot: no GUI backend, no global figure list to
    leak into, and the process's matplotlib backend is left alone."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def panel_grid(n_rows: int, n_cols: int, *, width: float = 3.6, height: float = 2.9,
               sharey: bool | str = False) -> tuple[Figure, np.ndarray]:
    """A figure of n_rows x n_cols panels; axes always come back as a 2-D array. Call it
    inside ``figure_style`` (plot functions are ``styled``)."""
    fig = new_figure(width * n_cols, height * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharey=sharey)
    return fig, axes


def head_color(index: int) -> str:
    return HEAD_COLORS[index % len(HEAD_COLORS)]


def finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def interval(pair: Sequence[float | None] | None) -> tuple[float, float] | None:
    """An analysis [low, high] pair as floats, or None when either end is missing."""
    if pair is None or len(pair) != 2 or not all(finite(v) for v in pair):
        return None
    return float(pair[0]), float(pair[1])


def format_p(p: float | None, *, n_boot: int | None = None, one_sided: bool = False,
             raw: float | None = None) -> str:
    """A p-value in a figure (ablate.stats.pvalues): a bootstrap p (``n_boot`` given) at its
    floor as "< bound", one too imprecise to report as "≈ value"."""
    return resolution_text(resolve_p(p, n_boot=n_boot, one_sided=one_sided, raw=raw))


def resolution_text(resolution: PResolution) -> str:
    if resolution.kind in ("floor", "small"):
        return f"< {pvalue_number(resolution.bound)}"
    if resolution.kind == "coarse":
        return f"≈ {pvalue_number(resolution.value)}"
    return pvalue_number(resolution.value)


def scope_title(entry: Mapping[str, Any], *, site: bool = True) -> str:
    """"gsm8k teacher_forced T=8 · site head_input · svd_rank_k": what every panel of a
    figure shares (the intervention, and its control, where the entry names them)."""
    text = f"{entry.get('task')} {entry.get('mode')} T={entry.get('n_iterations')}"
    text += f" · site {entry['site']}" if site and entry.get("site") else ""
    if entry.get("intervention"):
        text += f" · {entry['intervention']}" + (f" vs {entry['control']}"
                                                 if entry.get("control") else "")
    return text


def suptitle_from(fig: Figure, entry: Mapping[str, Any] | None, *, site: bool = True) -> None:
    """Title a figure with the scope its panels share (nothing when no panel has data)."""
    if entry is not None:
        fig.suptitle(scope_title(entry, site=site), fontsize=10)


def first_entry(grid: Sequence[Sequence[Any]]) -> Any:
    """The first non-empty cell of a panel grid, or None."""
    return next((cell for row in grid for cell in row if cell is not None), None)


def draw_intervals(ax: Axes, position: float, e1: tuple[float, float] | None,
                   e3: tuple[float, float] | None, *, color: str, horizontal: bool = True,
                   offset: float = 0.0) -> None:
    """E3 as a thin capped bar, E1 as a thick bar, centred on ``position`` (+offset)."""
    at = position + offset
    if e3 is not None:
        if horizontal:
            ax.errorbar([(e3[0] + e3[1]) / 2], [at], xerr=[[(e3[1] - e3[0]) / 2]], fmt="none",
                        ecolor=color, elinewidth=1.0, capsize=3, zorder=3)
        else:
            ax.errorbar([at], [(e3[0] + e3[1]) / 2], yerr=[[(e3[1] - e3[0]) / 2]], fmt="none",
                        ecolor=color, elinewidth=1.0, capsize=3, zorder=3)
    if e1 is not None:
        if horizontal:
            ax.plot(e1, [at, at], color=color, linewidth=4.0, alpha=0.55,
                    solid_capstyle="butt", zorder=4)
        else:
            ax.plot([at, at], e1, color=color, linewidth=4.0, alpha=0.55,
                    solid_capstyle="butt", zorder=4)


def interval_legend_handles(color: str = ZERO) -> list[Line2D]:
    return [Line2D([], [], color=color, linewidth=4.0, alpha=0.55,
                   label="E1: these checkpoints"),
            Line2D([], [], color=color, linewidth=1.0, marker="|", markersize=7,
                   label="E3: new training run"),
            Line2D([], [], color=color, linestyle="none", marker="o", markerfacecolor="none",
                   markersize=4, label="per seed")]


@dataclass(frozen=True)
class ForestRow:
    """One row of a forest plot (values in the row's unit)."""

    label: str
    estimate: float | None
    e1: Sequence[float | None] | None
    e3: Sequence[float | None] | None
    per_seed: Sequence[float] = ()
    note: str = ""  # printed right of the panel (e.g. "Holm p = 0.01")
    color: str = SVD
    seed_colors: Sequence[str] = field(default_factory=tuple)


def draw_forest(ax: Axes, rows: Sequence[ForestRow], *, reference: float | None = 0.0,
                bands: Sequence[tuple[float, float]] = ()) -> None:
    """Rows top to bottom: per-seed dots, E1/E3 bars, the estimate; notes at the right.
    ``bands`` shade x ranges (e.g. an equivalence margin)."""
    positions = np.arange(len(rows))[::-1].astype(float)
    for low, high in bands:
        ax.axvspan(low, high, color="#2e8b57", alpha=0.08, zorder=0, linewidth=0)
    if reference is not None:
        ax.axvline(reference, color=ZERO, linewidth=0.8, linestyle="--", zorder=1)
    for y, row in zip(positions, rows, strict=True):
        seeds = [v for v in row.per_seed if finite(v)]
        if seeds:
            # Spread the dots vertically a little so equal seeds stay visible.
            jitter = np.linspace(-0.18, 0.18, len(seeds)) if len(seeds) > 1 else np.zeros(1)
            colors = list(row.seed_colors) or [row.color] * len(seeds)
            ax.scatter(seeds, y + jitter, s=14, facecolors="none", edgecolors=colors[:len(seeds)],
                       linewidths=0.9, zorder=5)
        draw_intervals(ax, float(y), interval(row.e1), interval(row.e3), color=row.color)
        if finite(row.estimate):
            ax.plot([row.estimate], [y], marker="D", markersize=5, color=row.color, zorder=6)
        if row.note:
            ax.annotate(row.note, xy=(1.01, y), xycoords=("axes fraction", "data"),
                        fontsize=7.5, va="center", ha="left", color=ZERO,
                        annotation_clip=False)
    ax.set_yticks(positions, [row.label for row in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="y", visible=False)


def note_panel(ax: Axes, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8.5, wrap=True,
            transform=ax.transAxes, color=ZERO)
