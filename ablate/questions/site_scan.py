"""Exploratory scan over sites: where a group's ablations act at several sites, the Q1
slope's E3 p-value on accuracy at every site, Benjamini-Hochberg adjusted. Not a
pre-registered claim, so it takes no part in Holm.

    >>> SITE_SCAN.at_group(group, ctx)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ablate.questions.base import (
    AnalysisContext,
    Evidence,
    Finding,
    GroupEntry,
    GroupRows,
    Question,
)
from ablate.questions.blocks import Block, Heading, Paragraph, TableView
from ablate.questions.words import head_scope, p_value
from ablate.stats.multiplicity import benjamini_hochberg


@dataclass
class ScanEntry(GroupEntry):
    output: ClassVar[str] = "scans"
    intervention: str
    outcome: str
    test: str
    label: str
    sites: list[str]
    p_e3: list[float]
    p_bh: list[float]


class SiteScan(Question):
    key = "scans"
    shared_stream = True
    outputs = ("scans",)
    title = "Exploratory: scan over sites"

    def at_group(self, group: GroupRows, ctx: AnalysisContext) -> list[Finding]:
        """One scan per ablation found at >= 2 sites of the group."""
        if len(group.sites) < 2:
            return []
        by_arm: dict[str, dict[str, float | None]] = {}
        for entry in ctx.entries("q1"):
            if (entry.outcome == "correct" and entry.site in group.sites  # type: ignore[attr-defined]
                    and entry.group == group.key):  # type: ignore[attr-defined]
                by_arm.setdefault(entry.intervention, {})[  # type: ignore[attr-defined]
                    entry.site] = entry.claims[0].p_e3  # type: ignore[attr-defined]
        scans: list[Finding] = []
        for arm, found in by_arm.items():
            if len(found) < 2:
                continue
            ordered = sorted(found)
            p_values = [np.nan if found[s] is None else found[s] for s in ordered]
            scans.append(ScanEntry(**group.key.as_dict(), intervention=arm, outcome="correct",
                                   test="Q1 slope per halving of k (E3)", label="exploratory",
                                   sites=ordered, p_e3=p_values,
                                   p_bh=benjamini_hochberg(p_values).tolist()))
        return scans

    def section(self, evidence: Evidence) -> list[Block]:
        if not evidence.analysis.get("scans"):
            return []
        return [Heading(2, self.title or ""),
                Paragraph("Exploratory, not a pre-registered claim: the Q1 slope's E3 p at "
                          "every site of a group, Benjamini-Hochberg adjusted.")]

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        rows = [(head_scope(e, site=False), e["test"], site, p_value(p), p_value(p_bh))
                for e in analysis.get("scans", [])
                for site, p, p_bh in zip(e["sites"], e["p_e3"], e["p_bh"], strict=True)]
        return [TableView("scans", "Exploratory scan over sites (Benjamini-Hochberg)",
                          ("group", "test", "site", "p E3", "p BH"), tuple(rows))]

    def tables(self, analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        rows = []
        for entry in analysis.get("scans", []):
            base = {k: v for k, v in entry.items() if k not in {"sites", "p_e3", "p_bh"}}
            for site, p, p_bh in zip(entry["sites"], entry["p_e3"], entry["p_bh"], strict=True):
                rows.append({**base, "site": site, "p_e3": p, "p_bh": p_bh})
        return {"scans": rows}


SITE_SCAN = SiteScan()
