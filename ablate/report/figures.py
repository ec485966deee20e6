"""Which figures the report shows: each registered question's figures (or why one cannot be
drawn), numbered in order of appearance, then the validation figure of the appendix. The
specs of one figure name within a question share a number and get letters (one per scope).

    >>> plan = plan_figures(evidence, validation=None)  # doctest: +SKIP
    >>> fig, axes = plan["q1"][0].spec.draw()  # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pandas as pd

from ablate.plots import plot_validation
from ablate.questions.base import Evidence, FigureItem, FigureSpec, MissingFigure

VALIDATION = "validation"
VALIDATION_TITLE = "Validation: coverage and false-positive rate by method"


@dataclass(frozen=True)
class PlannedFigure:
    """A figure spec with its number, and its letter when several scopes share it."""

    number: int
    letter: str
    spec: FigureSpec

    @property
    def label(self) -> str:
        return f"Figure {self.number}{self.letter}: {self.spec.title}"

    @property
    def stem(self) -> str:
        compact = self.spec.scope.replace("T=", "T").replace(" at ", " ")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", compact).strip("-").lower()
        return f"fig{self.number:02d}-{self.spec.name}" + (f"-{slug}" if slug else "")


Planned = PlannedFigure | MissingFigure


def plan_figures(evidence: Evidence, validation: pd.DataFrame | None,
                 validation_hint: str = "") -> dict[str, list[Planned]]:
    """Question key (and "validation") -> its figures in order, numbered from 1 in the
    order the report shows them; questions that do not apply to the run have none."""
    plan: dict[str, list[Planned]] = {}
    number = 0
    sections = [(q.key, q.figures(evidence)) for q in evidence.questions if q.applies(evidence)]
    sections.append((VALIDATION, [_validation_figure(validation, validation_hint)]))
    for key, items in sections:
        planned: list[Planned] = []
        for name in dict.fromkeys(item.name for item in items):
            number += 1
            same = [item for item in items if item.name == name]
            for index, item in enumerate(same):
                if isinstance(item, MissingFigure):
                    planned.append(replace(item, number=number))
                else:
                    letter = chr(ord("a") + index) if len(same) > 1 else ""
                    planned.append(PlannedFigure(number, letter, item))
        plan[key] = planned
    return plan


def _validation_figure(table: pd.DataFrame | None, hint: str) -> FigureItem:
    if table is None:
        return MissingFigure("validation", VALIDATION_TITLE,
                             hint or "no validation table was given")
    return FigureSpec("validation", VALIDATION_TITLE, "", (
        "Simulated designs with known truth (bench/stats_validation.py). Filled dots: "
        "coverage of the E3 truth (a new training run) and the false-positive rate when "
        "that truth is 0; open dots: coverage of each method's own truth. Green: the "
        "nominal rate +-2 Monte-Carlo SE."), lambda: plot_validation(table))
