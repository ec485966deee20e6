"""Figures of matrix-CODI latent thoughts (Q5's profile figure; its depth figure reuses
``plot_depth`` with the mean latent erank): the effective rank of each latent thought
Z_1..Z_n, one line per group (number of latents) on shared axes.

Arrays come from the run's records: ``ErankPanel.values`` is the latent erank
(n_seeds, n_items, n_latents) of one ``q5`` entry, with E1/E3 intervals of the mean at each
latent step, each (n_latents, 2).

    >>> fig, axes = plot_latent_profiles([ErankPanel(entry, values, e1, e3)])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ablate.plots.erank import ErankPanel
from ablate.plots.style import (
    draw_intervals,
    finite,
    head_color,
    interval,
    interval_legend_handles,
    note_panel,
    panel_grid,
    styled,
    suptitle_from,
)

SPREAD = 0.12  # horizontal offset between the interval bars of neighbouring groups


def _profile_claim(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((c for c in entry.get("claims", []) if c.get("aspect") == "profile"
                 and c.get("role") == "primary"), None)


def _label(entry: Mapping[str, Any]) -> str:
    claim = _profile_claim(entry)
    label = f"{entry['config_label']} ({entry['n_latents']} latents)"
    if claim is None or not finite(claim.get("estimate")):
        return label
    text = f"{label}: slope {claim['estimate']:+.3g}/step"
    e3, e1 = interval(claim.get("e3")), interval(claim.get("e1"))
    if e3:
        return text + f", E3 [{e3[0]:+.3g}, {e3[1]:+.3g}]"
    return text + (f", E1 [{e1[0]:+.3g}, {e1[1]:+.3g}] (one seed)" if e1 else "")


@styled
def plot_latent_profiles(panels: Sequence[ErankPanel]) -> tuple[Figure, np.ndarray]:
    """Effective rank of latent thought Z_j against j, one coloured line per
    group (mean over seeds and problems) with E1/E3 bars at each step, thin lines for
    single seeds and a band over the 25-75% of problems (seed-mean profiles)."""
    fig, axes = panel_grid(1, 1, width=6.4, height=3.8)
    ax = axes[0, 0]
    if not panels:
        note_panel(ax, "no latent thoughts")
        return fig, axes
    offsets = (np.arange(len(panels)) - (len(panels) - 1) / 2) * SPREAD
    longest = 1
    for index, panel in enumerate(panels):
        color = head_color(index)
        values = np.asarray(panel.values, dtype=float)  # (n_seeds, n_items, n_latents)
        steps = np.arange(1, values.shape[2] + 1)
        longest = max(longest, steps[-1])
        per_problem = values.mean(axis=0)  # (n_items, n_latents)
        ax.fill_between(steps, np.percentile(per_problem, 25, axis=0),
                        np.percentile(per_problem, 75, axis=0), color=color, alpha=0.15,
                        linewidth=0)
        profiles = np.asarray(panel.entry["per_seed_profile"], dtype=float)
        if profiles.shape[0] > 1:
            for profile in profiles:
                ax.plot(steps, profile, color=color, linewidth=0.7, alpha=0.55)
        ax.plot(steps, panel.entry["mean_profile"], color=color, linewidth=2.2, marker="o",
                markersize=3.5, label=_label(panel.entry))
        for position, step in enumerate(steps):
            e1 = None if panel.e1 is None else interval(panel.e1[position].tolist())
            e3 = None if panel.e3 is None else interval(panel.e3[position].tolist())
            draw_intervals(ax, float(step), e1, e3, color=color, horizontal=False,
                           offset=float(offsets[index]))
    ax.set_xticks(np.arange(1, longest + 1), [f"Z{j}" for j in range(1, longest + 1)])
    ax.set_xlim(0.5, longest + 0.5)
    ax.set_xlabel("latent thought (Z1 is the first; study site latent.j edits Z(j+1))")
    ax.set_ylabel("effective rank of the latent thought")
    ax.set_title("effective rank over latent steps; lines: one group each", loc="left")
    suptitle_from(fig, panels[0].entry, site=False)
    handles = [*ax.get_legend_handles_labels()[0],
               Line2D([], [], color="#444444", linewidth=0.7, label="one seed"),
               Patch(color="#444444", alpha=0.15, label="25-75% of problems"),
               *interval_legend_handles()[:2]]
    fig.legend(handles=handles, loc="outside lower center", ncol=2)
    return fig, axes
