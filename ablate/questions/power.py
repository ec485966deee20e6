"""What would change a conclusion: the variance components behind each claim (collected by
every question's analysis), the minimum detectable effect (MDE) by number of seeds, and the
claims that hold for these checkpoints but were not shown across seeds.

    >>> POWER.section(evidence)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from ablate.plots import plot_variance_components
from ablate.questions.base import (
    AnalysisContext,
    Entry,
    Evidence,
    FigureItem,
    FigureSpec,
    Finding,
    Question,
    VarianceComponent,
)
from ablate.questions.blocks import Block, Bullets, Heading, Paragraph, TableView
from ablate.questions.words import head_scope, number
from ablate.stats.power import mde_table

RECOMMENDED_SEEDS = 5
RECOMMENDATION = ("use >= 5 seeds for across-seed (E3) claims and >= 4 checkpoints per arm "
                  "for training-time comparisons")


@dataclass
class PowerEntry(Entry):
    output: ClassVar[str] = "power"
    variance_components: list[VarianceComponent]
    mde_table: list[dict[str, Any]] = field(default_factory=list)
    recommendation: str = RECOMMENDATION


class Power(Question):
    key = "power"
    shared_stream = True
    outputs = ("power",)
    title = "What would change a conclusion"

    def at_run(self, records: pd.DataFrame, ctx: AnalysisContext) -> list[Finding]:
        return [PowerEntry(list(ctx.variance), mde_table().to_dict(orient="records"))]

    def to_json(self, found: Mapping[str, list[Entry]], ctx: AnalysisContext
                ) -> dict[str, Any]:
        (entry,) = found["power"]
        return {"power": entry.to_json()}

    def section(self, evidence: Evidence) -> list[Block]:
        power = evidence.analysis.get("power", {})
        mde = {int(row["n_seeds"]): row["mde_in_seed_sd"] for row in power.get("mde_table", [])}
        used = sorted({int(c["n_seeds"]) for c in power.get("variance_components", [])})
        blocks: list[Block] = [Heading(2, self.title or ""), Paragraph(
            "An across-seed (E3) claim is, at its core, a t test on the per-seed estimates, so "
            "its power depends on the number of seeds and on how much the effect varies "
            "between seeds. The minimum detectable effect (MDE) is the smallest true effect "
            "found with 80% power at two-sided alpha 0.05, in units of the seed-to-seed SD of "
            "the effect; the table of variance components turns it into the outcome's units "
            "for this run.")]
        sentences = [f"with {n} seed{'s' if n != 1 else ''} the MDE is {number(mde[n])} seed "
                     "SDs" for n in used if n in mde]
        if sentences:
            target = (f"; at {RECOMMENDED_SEEDS} seeds it is {number(mde[RECOMMENDED_SEEDS])}"
                      if RECOMMENDED_SEEDS in mde else "")
            blocks.append(Paragraph(f"In this run, {', '.join(sentences)}{target}. An "
                                    "across-seed effect below the MDE in the table would "
                                    "probably be missed, so a 'not significant' verdict there "
                                    "is weak evidence."))
        if any(n < 2 for n in used):
            blocks.append(Paragraph("With one seed there is no seed-to-seed spread to "
                                    "estimate: no MDE applies and no across-seed claim can be "
                                    "made."))
        fragile = [claim["claim"] + f" ({head_scope(entry, site=bool(entry.get('site')))})"
                   for question in evidence.questions
                   for entry, claim in question.review_claims(evidence.analysis)
                   if claim.get("verdict") == "these_checkpoints_only"]
        if fragile:
            blocks += [Paragraph("These claims hold for these checkpoints (E1) but were not "
                                 "shown across seeds (E3); more seeds could confirm or "
                                 "overturn them:"), Bullets(tuple(fragile))]
        recommendation = power.get("recommendation")
        blocks.append(Paragraph(f"Recommendation: {recommendation or ''}. This run has "
                                f"{', '.join(map(str, used)) or 'no'} seed(s) per group; "
                                f"{RECOMMENDED_SEEDS} or more are recommended."))
        return blocks

    def figures(self, evidence: Evidence) -> list[FigureItem]:
        power = evidence.analysis.get("power", {})
        return [FigureSpec("variance-power", "Variance components and the minimum detectable "
                           "effect", "", (
                               "Left: share of seed, problem and residual variance of each "
                               "per-item quantity behind a claim. Right: the smallest "
                               "across-seed effect detected with 80% power, in units of the "
                               "seed-to-seed SD of the effect, against the number of seeds."),
                           lambda: plot_variance_components(
                               power.get("variance_components", []),
                               power.get("mde_table", [])))]

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        power = analysis.get("power", {})
        components = [(head_scope(c), c["quantity"], str(c["n_seeds"]), str(c["n_items"]),
                       number(c["seed"]), number(c["problem"]), number(c["residual"]),
                       number(c["per_seed_sd"]), number(c["mde_in_seed_sd"]),
                       number(c["mde_in_units"]))
                      for c in power.get("variance_components", [])]
        mde = [(str(row["n_seeds"]), number(row["mde_in_seed_sd"]))
               for row in power.get("mde_table", [])]
        return [TableView("variance_components",
                          "Variance components and the minimum detectable effect (80% power)",
                          ("group", "quantity", "seeds", "items", "seed var", "problem var",
                           "residual var", "per-seed SD", "MDE (seed SDs)", "MDE (units)"),
                          tuple(components)),
                TableView("power_mde", "Minimum detectable effect by number of seeds",
                          ("seeds", "MDE (seed-to-seed SDs)"), tuple(mde))]

    def tables(self, analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        power = analysis.get("power", {})
        return {"power_mde": list(power.get("mde_table", [])),
                "variance_components": list(power.get("variance_components", []))}


POWER = Power()
