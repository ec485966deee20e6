"""Levels: the outcome under every condition of a site (unablated, each ablation and each
control, per k), the descriptive layer under Q1 and Q2. No claims and no section of its
own; its figures (an outcome against log2 k) appear in the sections of Q1 and Q2.

    >>> figure_items(evidence, ("correct",), "accuracy-vs-k", ...)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ablate.interventions import INTERVENTIONS
from ablate.plots import LevelPanel, plot_levels
from ablate.plots.ablation import arms_of
from ablate.questions.arms import arm_names, either
from ablate.questions.base import (
    AnalysisContext,
    Entry,
    Evidence,
    FigureItem,
    FigureSpec,
    Finding,
    MissingFigure,
    Question,
    SiteOutcome,
)
from ablate.questions.figures import (
    by_scope,
    grid,
    group_rows,
    intervals_caption,
    scope_text,
)
from ablate.questions.tables import entry_keys, flatten
from ablate.stats import bits_per_byte, mean_interval, random_mean
from ablate.stats.controls import LN2
from ablate.stats.frames import pivot_draws
from ablate.stats.intervals import TwoWayResult

# outcome -> factor from the record column to the analysis unit (accuracy is in pp).
SCALES = {"correct": 100.0, "answer_loglik": 1.0}


@dataclass
class LevelRow:
    condition: str  # "none", or the records' intervention value ("svd_rank_k")
    role: str  # "unablated", or the arm's registered role: "ablation" | "control"
    k: int | None
    estimate: float
    e1: list[float]
    e3: list[float]
    per_seed: list[float]

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def of(cls, condition: str, role: str, k: int | None, result: TwoWayResult) -> LevelRow:
        return cls(condition, role, k, result.estimate, list(result.e1), list(result.e3),
                   list(result.per_seed))


@dataclass
class LevelsEntry(Entry):
    output: ClassVar[str] = "levels"
    config_label: str
    task: str
    mode: str
    n_iterations: int
    site: str
    outcome: str
    unit: str
    rows: list[LevelRow] = field(default_factory=list)


def level_rows(site: SiteOutcome, ctx: AnalysisContext) -> list[LevelRow]:
    """The mean (E1/E3 intervals) of every condition: unablated first, then each arm by k."""
    options, scale = ctx.options, site.scale
    rows = []
    if site.plain is not None:
        plain = site.plain.values
        rows.append(LevelRow.of("none", "unablated", None,
                                mean_interval(scale * plain, **options)
                                if site.n_bytes is None
                                else bits_per_byte(plain, site.n_bytes, **options)))
    for arm in site.arms:
        for k, array in arm.arrays.items():
            if arm.role.name == "control":
                result = (random_mean(scale * array.values, **options) if site.n_bytes is None
                          else random_mean(array.values / LN2, denominator=site.n_bytes,
                                           **options))
            else:
                result = (mean_interval(scale * array.values, **options)
                          if site.n_bytes is None
                          else bits_per_byte(array.values, site.n_bytes, **options))
            rows.append(LevelRow.of(arm.name, arm.role.name, k, result))
    return rows


class Levels(Question):
    key = "levels"
    shared_stream = True
    outputs = ("levels",)

    def at_site(self, site: SiteOutcome, ctx: AnalysisContext) -> list[Finding]:
        return [LevelsEntry(**site.keys, outcome=site.outcome, unit=site.unit,
                            rows=level_rows(site, ctx))]

    def tables(self, analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {"levels": [{**entry_keys(entry), **flatten(row)}
                           for entry in analysis.get("levels", []) for row in entry["rows"]]}


LEVELS = Levels()


def draw_range(records: pd.DataFrame, entry: Mapping[str, Any]
               ) -> dict[str, dict[int, tuple[float, float]]] | None:
    """For a ``levels`` entry: per drawn control and k, (min, max) over its draws of the
    draw's mean over seeds and items, in the entry's unit; None when the run has no draws."""
    outcome = entry["outcome"]
    found: dict[str, dict[int, tuple[float, float]]] = {}
    for arm in arms_of(entry)["control"]:
        rows = group_rows(records, entry, intervention=arm, site=entry["site"])
        if rows.empty or rows["draw"].isna().any():
            continue
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
        if ranges:
            found[arm] = ranges
    return found or None


def level_panel(records: pd.DataFrame, entry: Mapping[str, Any]) -> LevelPanel:
    names = {arm: arm_names(arm) for found in arms_of(entry).values() for arm in found}
    return LevelPanel(entry, draw_range(records, entry), names)


def caption(entries: list[Mapping[str, Any]]) -> str:
    """What the lines of a levels figure are, named by the registry's display names."""
    arms: dict[str, list[str]] = {"ablation": [], "control": []}
    for entry in entries:
        for role, found in arms_of(entry).items():
            arms[role] += [arm for arm in found if arm not in arms[role]]
    ablations = [f"{arm_names(arm)[1]} projection" for arm in arms["ablation"]]
    controls = [f"{arm_names(arm)[1]} projections" for arm in arms["control"]]
    parts = []
    if ablations:
        parts.append(f"Bold line: {ablations[0]}, mean over seeds; thin lines: one seed each"
                     if len(ablations) == 1 else
                     f"Bold lines, one colour each: {', '.join(ablations)}, mean over seeds; "
                     "thin lines: one seed each")
    if controls:
        parts.append(f"dashed grey: mean of the {controls[0]}, shaded over the range of the "
                     "individual draws" if len(controls) == 1 else
                     f"dashed lines, one shade each: mean of the {' and the '.join(controls)}, "
                     "shaded over the range of the individual draws")
    return "; ".join(parts + ["diamond at the right: unablated"]) + "."


def figure_items(evidence: Evidence, outcomes: Sequence[str], name: str, title: str,
                 what: str, *, teacher_forced_only: bool = False) -> list[FigureItem]:
    """One figure per scope of ``outcomes`` against log2 k (rows: outcomes, columns: heads),
    or the reason none can be drawn."""
    records = evidence.records
    items: list[FigureItem] = []
    for scope, cells in by_scope(evidence.analysis["levels"], site=True).items():
        panels = grid(cells, outcomes, lambda entry: level_panel(records, entry))
        if panels:
            shown = [panel.entry for row in panels for panel in row if panel is not None]
            items.append(FigureSpec(name, title, scope_text(scope), (
                f"{scope_text(scope)}. {caption(shown)} {intervals_caption(evidence.level)}"),
                lambda panels=panels: plot_levels(panels)))
    if not items:
        kinds = list(INTERVENTIONS)
        items.append(MissingFigure(name, title, (
            f"the run has no {either(kinds)} conditions with {what} recorded"
            + (" (teacher-forced metrics; generative runs do not record them)"
               if teacher_forced_only else ""))))
    return items
