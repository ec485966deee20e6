"""Report figures drawn from an analysis dict (ablate.stats) and, where the analysis keeps
only summaries, from arrays taken out of the run's records. Every function returns
``(fig, axes)`` (axes a 2-D array) and never saves: only ablate.report writes files.
Figures live on Agg canvases outside pyplot (the process's backend is left alone); styles
apply per figure, never globally.

    >>> fig, axes = plot_svd_vs_random([[analysis["q2"][0]]])  # doctest: +SKIP
"""

from __future__ import annotations

from ablate.plots.ablation import (
    LevelPanel,
    monotone_label,
    plot_adjacent_contrasts,
    plot_levels,
    plot_svd_vs_random,
)
from ablate.plots.erank import (
    DepthPanel,
    ErankPanel,
    plot_depth,
    plot_erank_trajectories,
    plot_erank_vs_length,
    plot_slopes_by_head,
)
from ablate.plots.power import VALIDATION_COLUMNS, plot_validation, plot_variance_components
from ablate.plots.style import figure_style

__all__ = [
    "VALIDATION_COLUMNS",
    "DepthPanel",
    "ErankPanel",
    "LevelPanel",
    "figure_style",
    "monotone_label",
    "plot_adjacent_contrasts",
    "plot_depth",
    "plot_erank_trajectories",
    "plot_erank_vs_length",
    "plot_levels",
    "plot_slopes_by_head",
    "plot_svd_vs_random",
    "plot_validation",
    "plot_variance_components",
]
