"""Which report figures (statistics.md, "Figures a report shows") a run can support, one
per scope (task, mode, T and, for ablations, site) with one panel column per head, and,
for each figure the data cannot support, the reason in words.

    >>> specs, missing = plan_figures(run, validation=None)  # doctest: +SKIP
    >>> fig, axes = specs[0].draw()  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ablate.plots import (
    LevelPanel,
    plot_adjacent_contrasts,
    plot_depth,
    plot_erank_trajectories,
    plot_erank_vs_length,
    plot_levels,
    plot_slopes_by_head,
    plot_svd_vs_random,
    plot_validation,
    plot_variance_components,
)
from ablate.plots.latent import plot_latent_profiles
from ablate.report.figure_data import depth_panel, draw_range, erank_panel, latent_depth_panel
from ablate.report.run import RunAnalysis

TITLES = {
    1: ("accuracy-vs-k", "Accuracy against log2 k"),
    2: ("svd-minus-random", "SVD minus random rank-k projection, per k"),
    3: ("adjacent-contrasts", "Adjacent contrasts (k vs 2k) and the monotonicity verdict"),
    4: ("loglik-bpb-vs-k", "Answer log-likelihood and bits per byte against log2 k"),
    5: ("erank-vs-iteration", "Effective rank against iteration, per head"),
    6: ("slopes-by-head", "Per-seed slopes by head, and the head interaction"),
    7: ("erank-by-depth", "Effective rank by depth, and the length-adjusted partial plot"),
    8: ("erank-vs-length", "Effective rank against length (the confounding diagnostic)"),
    9: ("variance-power", "Variance components and the minimum detectable effect"),
    10: ("validation", "Validation: coverage and false-positive rate by method"),
    11: ("latent-erank-profile", "Effective rank of each latent thought (matrix-CODI)"),
    12: ("latent-erank-by-depth", "Mean latent effective rank by depth, and the "
                                  "length-adjusted partial plot"),
}
INTERVALS = ("Thick bars: E1, the {level:.0%} interval for these checkpoints (problems random, "
             "seeds fixed); thin capped bars: E3, for a new training run on problems like "
             "these (seeds and problems random).")


@dataclass(frozen=True)
class FigureSpec:
    """A figure to draw: ``draw()`` returns (fig, axes); nothing is drawn before that."""

    number: int
    scope: str  # "" for run-wide figures
    caption: str
    draw: Callable[[], tuple[Figure, np.ndarray]]

    @property
    def title(self) -> str:
        return TITLES[self.number][1]

    @property
    def stem(self) -> str:
        compact = self.scope.replace("T=", "T").replace(" at ", " ")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", compact).strip("-").lower()
        return f"fig{self.number:02d}-{TITLES[self.number][0]}" + (f"-{slug}" if slug else "")


@dataclass(frozen=True)
class MissingFigure:
    """A figure the run cannot support, and why."""

    number: int
    reason: str

    @property
    def title(self) -> str:
        return TITLES[self.number][1]


def _scope(entry: Mapping[str, Any], *, site: bool) -> tuple[Any, ...]:
    keys = (entry["task"], entry["mode"], entry["n_iterations"])
    return (*keys, entry["site"]) if site else keys


def scope_text(scope: Sequence[Any]) -> str:
    text = f"{scope[0]} {scope[1]} T={scope[2]}"
    return text + (f" at {scope[3]}" if len(scope) > 3 else "")


def _by_scope(entries: Sequence[Mapping[str, Any]], *, site: bool
              ) -> dict[tuple[Any, ...], dict[tuple[str, str], Mapping[str, Any]]]:
    """scope -> (config_label, outcome) -> entry."""
    scopes: dict[tuple[Any, ...], dict[tuple[str, str], Mapping[str, Any]]] = {}
    for entry in entries:
        key = (str(entry["config_label"]), str(entry.get("outcome", "")))
        scopes.setdefault(_scope(entry, site=site), {})[key] = entry
    return dict(sorted(scopes.items(), key=lambda item: tuple(map(str, item[0]))))


def _grid(cells: Mapping[tuple[str, str], Mapping[str, Any]], outcomes: Sequence[str],
          make: Callable[[Mapping[str, Any]], Any]) -> list[list[Any]]:
    heads = sorted({head for head, _ in cells})
    rows = [[make(cells[(head, outcome)]) if (head, outcome) in cells else None
             for head in heads] for outcome in outcomes if any(o == outcome for _, o in cells)]
    return rows


def plan_figures(run: RunAnalysis, validation: pd.DataFrame | None,
                 validation_hint: str = "") -> tuple[list[FigureSpec], list[MissingFigure]]:
    """The figures this run supports, in spec order, and the ones it cannot support."""
    analysis, records, settings = run.analysis, run.records, run.settings
    intervals = INTERVALS.format(level=settings.level)
    specs: list[FigureSpec] = []
    missing: list[MissingFigure] = []
    levels = _by_scope(analysis["levels"], site=True)

    def level_panel(entry: Mapping[str, Any]) -> LevelPanel:
        return LevelPanel(entry, draw_range(records, entry))

    for number, outcomes, what in ((1, ("correct",), "accuracy"),
                                   (4, ("answer_loglik", "bits_per_byte"),
                                    "answer log-likelihood or bits per byte")):
        found = False
        for scope, cells in levels.items():
            grid = _grid(cells, outcomes, level_panel)
            if grid:
                found = True
                specs.append(FigureSpec(number, scope_text(scope), (
                    f"{scope_text(scope)}. Bold line: SVD top-k projection, mean over seeds; "
                    "thin lines: one seed each; dashed grey: mean of the random rank-k "
                    "projections, shaded over the range of the individual draws; diamond at "
                    f"the right: unablated. {intervals}"),
                    lambda grid=grid: plot_levels(grid)))
        if not found:
            missing.append(MissingFigure(number, (
                f"the run has no svd_rank_k or random_rank_k conditions with {what} "
                "recorded" + (" (teacher-forced metrics; generative runs do not record them)"
                              if number == 4 else ""))))
    q2 = _by_scope(analysis["q2"], site=True)
    for scope, cells in q2.items():
        grid = _grid(cells, ("correct", "answer_loglik", "bits_per_byte"), lambda e: e)
        specs.append(FigureSpec(2, scope_text(scope), (
            f"{scope_text(scope)}. Per k: SVD minus the mean over random draws, paired per "
            "problem (diamond), per-seed values (open dots), Holm-adjusted p-values at the "
            "right (family: the k of one outcome); shaded: the equivalence margin where one "
            f"is set. {intervals}"), lambda grid=grid: plot_svd_vs_random(grid)))
    if not q2:
        missing.append(MissingFigure(2, "the run has no random_rank_k draws at a k that also "
                                        "has svd_rank_k"))
    q1 = _by_scope(analysis["q1"], site=True)
    for scope, cells in q1.items():
        grid = _grid(cells, ("correct", "answer_loglik"), lambda e: e)
        specs.append(FigureSpec(3, scope_text(scope), (
            f"{scope_text(scope)}. Each row: the outcome at 2k minus at k (positive: the "
            "outcome falls when k is halved), per-seed values, one-sided p-values. "
            "'Monotone' needs every row to reject (intersection-union test). "
            f"{intervals}"), lambda grid=grid: plot_adjacent_contrasts(grid)))
    if not q1:
        missing.append(MissingFigure(3, "the run has fewer than two svd_rank_k ranks at any "
                                        "site, so there is no trend over k"))
    _erank_figures(run, specs, missing, intervals)
    _latent_figures(run, specs, missing, intervals)
    power = analysis.get("power", {})
    specs.append(FigureSpec(9, "", (
        "Left: share of seed, problem and residual variance of each per-item quantity "
        "behind a claim. Right: the smallest across-seed effect detected with 80% power, in "
        "units of the seed-to-seed SD of the effect, against the number of seeds."),
        lambda: plot_variance_components(power.get("variance_components", []),
                                         power.get("mde_table", []))))
    if validation is not None:
        specs.append(FigureSpec(10, "", (
            "Simulated designs with known truth (bench/stats_validation.py). Filled dots: "
            "coverage of the E3 truth (a new training run) and the false-positive rate when "
            "that truth is 0; open dots: coverage of each method's own truth. Green: the "
            "nominal rate +-2 Monte-Carlo SE."), lambda: plot_validation(validation)))
    else:
        missing.append(MissingFigure(10, validation_hint or "no validation table was given"))
    specs.sort(key=lambda spec: spec.number)
    missing.sort(key=lambda figure: figure.number)
    return specs, missing


def _erank_figures(run: RunAnalysis, specs: list[FigureSpec], missing: list[MissingFigure],
                   intervals: str) -> None:
    analysis, records, settings = run.analysis, run.records, run.settings
    q3 = _by_scope(analysis["q3"], site=False)
    comparisons: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for entry in analysis["q3_heads"]:
        comparisons.setdefault(_scope(entry, site=False), []).append(entry)
    for scope, cells in q3.items():
        entries = [cells[key] for key in sorted(cells)]
        specs.append(FigureSpec(5, scope_text(scope), (
            f"{scope_text(scope)}. Bold: mean over seeds; thin: one seed; shaded: 25-75% and "
            "10-90% of the sequences (seed-mean trajectories). M(0) is the embedding and is "
            f"not part of the slope. {intervals}"),
            lambda entries=entries: plot_erank_trajectories(
                [erank_panel(records, entry, settings) for entry in entries])))
        found = comparisons.get(scope, [])
        caption = (f"{scope_text(scope)}. Per head: the per-seed slopes of effective rank over "
                   "iterations (open dots) and their mean; below, each head difference with "
                   "its design (paired: heads swapped on the same checkpoints; unpaired: "
                   f"separate checkpoints) and the direction-flip test p. {intervals}")
        if not found:
            caption += " The run has one head here, so there is no head interaction."
        specs.append(FigureSpec(6, scope_text(scope), caption,
                                lambda entries=entries, found=found:
                                plot_slopes_by_head(entries, found)))
    if not q3:
        reason = ("no unablated rows carry erank_per_iter with at least two thinking "
                  "iterations (T >= 2)")
        missing += [MissingFigure(5, reason), MissingFigure(6, reason)]
    q4 = _by_scope(analysis["q4"], site=False)
    for scope, cells in q4.items():
        entries = [cells[key] for key in sorted(cells)]
        specs.append(FigureSpec(7, scope_text(scope), (
            f"{scope_text(scope)}. Top: effective rank of M(T) (mean over seeds) per item by "
            "the number of calculator annotations, n items per depth above each violin. "
            "Bottom: both residualised on log n_tokens, with the length-adjusted slope."),
            lambda entries=entries: plot_depth([depth_panel(records, e) for e in entries])))
        specs.append(FigureSpec(8, scope_text(scope), (
            f"{scope_text(scope)}. If effective rank rises with length, an unadjusted "
            "depth association is confounded; colour: depth."),
            lambda entries=entries: plot_erank_vs_length(
                [depth_panel(records, e) for e in entries])))
    if not q4:
        reason = ("no item has a known depth (calculator annotations <<...=...>>, as in "
                  "GSM8K solutions) together with erank_per_iter on unablated rows")
        missing += [MissingFigure(7, reason), MissingFigure(8, reason)]


def has_latents(run: RunAnalysis) -> bool:
    """Whether the run is a matrix-CODI study (its records carry latent thoughts' ranks):
    only then do the report's Q5 section and Figures 11-12 apply."""
    return "latent_erank" in run.records.columns or bool(run.analysis.get("q5"))


def _latent_figures(run: RunAnalysis, specs: list[FigureSpec], missing: list[MissingFigure],
                    intervals: str) -> None:
    """Figures 11 and 12 from the ``q5`` entries, one per (task, mode, T); nothing (not
    even a note) for a run without a CODI model."""
    if not has_latents(run):
        return
    records, settings = run.records, run.settings
    q5 = _by_scope(run.analysis.get("q5", []), site=False)
    depth_found = False
    for scope, cells in q5.items():
        entries = [cells[key] for key in sorted(cells)]
        specs.append(FigureSpec(11, scope_text(scope), (
            f"{scope_text(scope)}. Effective rank of each latent thought Z_j (unablated), "
            "one line per group (number of latents): mean over seeds and problems; thin: one "
            "seed; shaded: 25-75% of the problems (seed-mean profiles). The legend gives the "
            f"slope per latent step. {intervals}"),
            lambda entries=entries: plot_latent_profiles(
                [erank_panel(records, entry, settings, column="latent_erank")
                 for entry in entries])))
        with_depth = [entry for entry in entries if entry.get("depth")]
        if with_depth:
            depth_found = True
            specs.append(FigureSpec(12, scope_text(scope), (
                f"{scope_text(scope)}. Top: mean effective rank over the latent thoughts "
                "(mean over seeds) per problem by the number of calculator annotations, n "
                "problems per depth below each violin; problems of unknown depth are left "
                "out. Bottom: both residualised on log n_tokens, with the length-adjusted "
                "slope."),
                lambda entries=with_depth: plot_depth(
                    [latent_depth_panel(records, entry) for entry in entries])))
    if not q5:
        reason = ("the records have no latent thoughts: no unablated row carries a non-empty "
                  "latent_erank (written by `ablate codi study` runs with n_latents > 0)")
        missing += [MissingFigure(11, reason), MissingFigure(12, reason)]
    elif not depth_found:
        missing.append(MissingFigure(12, "no problem with latent thoughts has a known depth "
                                         "(calculator annotations) taking >= 2 values"))
