"""Q1: does the outcome fall as projection rank falls? Per ablation at each site, the change
per halving of k (per-seed least-squares slopes on log2 k; E1 by problem-clustered OLS),
the adjacent contrasts behind the intersection-union monotonicity verdict, Page's trend
test (an E1 statement: it takes the seeds as fixed), the odds ratio per doubling (0/1
outcomes) and unablated minus the largest k (an identity check when that k keeps the
states: k >= d).

    >>> TREND.at_site(site, ctx)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ablate.plots import plot_adjacent_contrasts
from ablate.questions import levels
from ablate.questions.arms import arm_names, either, identity_reason, ranked_ablations
from ablate.questions.base import (
    AnalysisContext,
    Arm,
    Evidence,
    FigureItem,
    FigureSpec,
    Finding,
    GroupEntry,
    MissingFigure,
    Question,
    SiteOutcome,
    VerdictRow,
    variance_component,
)
from ablate.questions.blocks import Block, Heading, Paragraph, TableView
from ablate.questions.figures import (
    P_MARKS,
    by_scope,
    grid,
    intervals_caption,
    scope_of,
    scope_text,
)
from ablate.questions.tables import claim_rows, entry_keys, flatten
from ablate.questions.words import (
    CLAIM_COLUMNS,
    E1_WORDS,
    E3_WORDS,
    change_text,
    claim_blocks,
    claim_cells,
    head_scope,
    interval_words,
    is_check,
    note_blocks,
    number,
    outcome_words,
    p_inline,
    p_value,
    pair,
    pct,
    verdict_text,
)
from ablate.stats.claims import Claim, interval_claim
from ablate.stats.trend import accuracy_trend, halving_weights, unablated_contrast

OUTCOMES = ("correct", "answer_loglik")


@dataclass
class TrendEntry(GroupEntry):
    output: ClassVar[str] = "q1"
    site: str
    intervention: str  # the ablation (records' intervention value)
    outcome: str
    unit: str
    n_seeds: int
    seeds: list[int]
    n_items: int
    ks: list[int]
    claims: list[Claim]
    odds_ratio_per_doubling: dict[str, Any] | None
    page: dict[str, Any] | None
    adjacent: list[dict[str, Any]]
    monotone: dict[str, Any]
    per_seed_means: Any
    notes: list[str] = field(default_factory=list)


class Trend(Question):
    key = "q1"
    shared_stream = True
    outputs = ("q1",)
    claim_outputs = ("q1",)
    title = "Q1: does accuracy fall as projection rank falls?"
    headline_figure = "accuracy-vs-k"

    @property
    def needs(self) -> str:  # type: ignore[override]
        return f"{either(ranked_ablations())} ranks"

    def at_site(self, site: SiteOutcome, ctx: AnalysisContext) -> list[Finding]:
        """Each ablation with >= 2 ranks at the site (Holm family: the site's outcome)."""
        if site.outcome not in OUTCOMES:
            return []
        found: list[Finding] = []
        for arm in site.ablations():
            if len(arm.ks) >= 2:
                found += _trend(site, arm, {k: arm.arrays[k] for k in arm.ks}, ctx)
        return found

    # -- presentation --------------------------------------------------------------------
    def section(self, evidence: Evidence) -> list[Block]:
        entries = evidence.analysis.get("q1", [])
        blocks: list[Block] = [Heading(2, self.title or ""), Paragraph(
            "Estimand: the change in the outcome per halving of k, from per-seed least-squares "
            "slopes on log2 k (E1: problem-clustered OLS with seed fixed effects; E3: two-way "
            "interval on the per-seed slopes). Unablated vs the largest k is a separate "
            "contrast in the same Holm family.")]
        for entry in entries:
            blocks += [Heading(3, f"{head_scope(entry)}: {outcome_words(entry['outcome'])}"),
                       *entry_blocks(entry, evidence.level)]
        if not entries:
            blocks.append(Paragraph(f"Not tested: the run has fewer than two "
                                    f"{either(ranked_ablations())} ranks."))
        return blocks

    def figures(self, evidence: Evidence) -> list[FigureItem]:
        items = levels.figure_items(evidence, ("correct",), "accuracy-vs-k",
                                    "Accuracy against log2 k", "accuracy")
        title = "Adjacent contrasts (k vs 2k) and the monotonicity verdict"
        scopes = by_scope(evidence.analysis["q1"], site=True, arm=True)
        for scope, cells in scopes.items():
            panels = grid(cells, OUTCOMES, lambda entry: entry)
            items.append(FigureSpec("adjacent-contrasts", title, scope_text(scope), (
                f"{scope_text(scope)}. Each row: the outcome at 2k minus at k (positive: the "
                "outcome falls when k is halved), per-seed values, one-sided p-values. "
                "'Monotone' needs every row to reject (intersection-union test). "
                f"{intervals_caption(evidence.level)} {P_MARKS}"),
                lambda panels=panels: plot_adjacent_contrasts(panels)))
        if not scopes:
            items.append(MissingFigure("adjacent-contrasts", title, (
                f"the run has fewer than two {either(ranked_ablations())} ranks at any site, "
                "so there is no trend over k")))
        return items

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        entries = analysis.get("q1", [])
        rows = [(head_scope(e), c["claim"], c["unit"], *claim_cells(c))
                for e in entries for c in e["claims"]]
        adjacent = [(head_scope(e), e["outcome"], f"k={a['k_high']} minus k={a['k_low']}",
                     number(a["estimate"], signed=True), pair(a["e1"]),
                     p_value(a["p_one_e1"], n_boot=a.get("n_boot"), one_sided=True),
                     pair(a["e3"]), p_value(a["p_one_e3"]), _monotone_cell(e["monotone"]))
                    for e in entries for a in e["adjacent"]]
        return [TableView("q1", "Q1: change per halving of k, and unablated vs the largest k",
                          ("group", "claim", "unit", *CLAIM_COLUMNS), tuple(rows)),
                TableView("q1_adjacent", "Q1: adjacent contrasts (one-sided p for > 0)",
                          ("group", "outcome", "contrast", "estimate", "E1 interval", "p E1",
                           "E3 interval", "p E3", "monotone"), tuple(adjacent))]

    def tables(self, analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        entries = analysis.get("q1", [])
        return {"q1": claim_rows(entries),
                "q1_adjacent": [{**entry_keys(e), **flatten(a)} for e in entries
                                for a in e["adjacent"]]}

    def verdicts(self, analysis: Mapping[str, Any]) -> list[VerdictRow]:
        return [VerdictRow(entry["config_label"], f"accuracy per halving of k, pp "
                           f"({arm_names(entry['intervention'])[0]})" if slope["unit"] ==
                           "pp per halving of k" else f"accuracy, {slope['unit']}",
                           scope_text(scope_of(entry, site=False)), slope, entry["site"])
                for entry in analysis.get("q1", []) if entry["outcome"] == "correct"
                for slope in entry["claims"][:1] if not is_check(slope)]

    def summary(self, analysis: Mapping[str, Any]) -> list[str]:
        items = []
        for entry in analysis.get("q1", []):
            if entry["outcome"] != "correct":
                continue
            slope = entry["claims"][0]
            items.append(f"Q1, {head_scope(entry)}: accuracy "
                         f"{change_text(slope['estimate'], 'pp', signed=False)} per halving "
                         f"of k ({interval_words(slope)}): {verdict_text(slope['verdict'])}. "
                         f"{_short_monotone(entry)}")
        return items


TREND = Trend()


def _trend(site: SiteOutcome, arm: Arm, arrays: Mapping[int, Any], ctx: AnalysisContext
           ) -> list[Finding]:
    values = {k: array.values for k, array in arrays.items()}
    scale, unit, outcome = site.scale, site.unit, site.outcome
    trend = accuracy_trend(values, rng=ctx.rng, level=ctx.level, n_boot=ctx.n_boot,
                           alpha=ctx.alpha, scale=scale)
    family = site.group.family("q1", site.site, outcome)
    ols = trend.slope_ols
    claims = [interval_claim(trend.slope, claim=f"{outcome} changes when k is halved",
                             family=family, unit=f"{unit} per halving of k",
                             e1_model={"interval": ols.interval, "p": ols.p,
                                       "method": ols.method})]
    notes = list(trend.notes)
    if site.plain is not None:
        contrast = unablated_contrast(site.plain.values, values, rng=ctx.rng, level=ctx.level,
                                      n_boot=ctx.n_boot, scale=scale)
        claim = interval_claim(contrast, claim=f"unablated {outcome} differs from "
                               f"k={max(values)}", family=family, unit=unit)
        # At k >= d the ablation keeps the states: this contrast is a check, not a test.
        claim.identity = identity_reason(arm, max(values), ctx.dims.get(site.group.config_label))
        claims.append(claim.with_extra(k=max(values)))
    else:
        notes.append("no unablated rows: the unablated vs largest-k contrast is not run")
    odds, page, reference = trend.odds_ratio, trend.page, site.reference
    keys = {**site.keys, "intervention": arm.name}
    entry = TrendEntry(
        **keys, outcome=outcome, unit=unit, n_seeds=len(reference.seeds),
        seeds=list(reference.seeds), n_items=len(reference.item_ids), ks=list(trend.ks),
        claims=claims,
        odds_ratio_per_doubling=None if odds is None else {
            "estimate": odds.estimate, "interval": list(odds.interval), "p": odds.p,
            "method": odds.method, "note": odds.note},
        page=None if page is None else {"statistic": page.statistic, "p": page.p,
                                        "method": page.method, "claim": "E1"},
        adjacent=[{"k_low": c.k_low, "k_high": c.k_high, "estimate": c.result.estimate,
                   "e1": list(c.result.e1), "e3": list(c.result.e3), "p_one_e1": c.p_one_e1,
                   "p_one_e3": c.p_one_e3, "n_boot": c.result.n_boot}
                  for c in trend.adjacent],
        monotone={"e1": trend.monotone_e1, "e3": trend.monotone_e3, "alpha": ctx.alpha,
                  "rule": "intersection-union: every adjacent one-sided contrast rejects"},
        per_seed_means=trend.per_seed_means, notes=notes)
    stacked = np.stack([values[k] for k in trend.ks], axis=1)
    per_item = np.einsum("k,skn->sn", halving_weights(trend.ks, scale), stacked)
    return [entry, variance_component(keys, f"q1 slope ({outcome}, {unit} per halving)",
                                      per_item)]


def entry_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q1`` entry: slope, monotonicity, Page, odds ratio, unablated contrast."""
    outcome, unit = outcome_words(entry["outcome"]), entry["unit"]
    ks = ", ".join(map(str, entry["ks"]))
    slope = entry["claims"][0]
    lead = (f"Over k = {ks} ({entry['n_seeds']} seed(s), {entry['n_items']} problems), "
            f"{outcome} {change_text(slope['estimate'], unit)} each time k is halved.")
    blocks = claim_blocks(slope, level=level, lead=lead, seeds=entry.get("seeds"))
    texts = [monotone_text(entry)]
    page = entry.get("page")
    if page:
        texts.append(page_text(page))
    odds = entry.get("odds_ratio_per_doubling")
    if odds and odds.get("estimate") is not None:
        texts.append(f"Secondary, {E1_WORDS}: the odds of a correct answer are multiplied by "
                     f"{number(odds['estimate'])} per doubling of k ({pct(level)} interval "
                     f"{pair(odds.get('interval'))}, p = {p_value(odds.get('p'))}; "
                     f"{odds['method']})" + (f"; {odds['note']}." if odds.get("note") else "."))
    blocks += [Paragraph(text) for text in texts]
    for claim in entry["claims"][1:]:
        lead = (f"Unablated minus k = {claim.get('k')}: {outcome} "
                f"{change_text(claim['estimate'], unit)} when the projection is removed.")
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"),
                               subject=f"Unablated minus k = {claim.get('k')} ({outcome})")
    return blocks + note_blocks(entry)


PAGE_E1 = ("an E1 statement, for these checkpoints: it takes the seeds as fixed, so it says "
           "nothing about a new training run (under an across-seed null it rejects far more "
           "often than its level)")


def page_text(page: Mapping[str, Any]) -> str:
    """Page's trend test, labelled as the E1 statement it is."""
    return (f"Page's trend test (E1) on the seeds x k table of per-seed means asks whether "
            f"these seeds agree on an increasing order over k: L = "
            f"{number(page['statistic'])}, p = {p_value(page['p'])} ({page['method']}); "
            f"{PAGE_E1}.")


def monotone_text(entry: Mapping[str, Any]) -> str:
    """The intersection-union verdict, naming the weakest adjacent contrast."""
    monotone, adjacent = entry.get("monotone") or {}, entry.get("adjacent") or []
    alpha = monotone.get("alpha", 0.05)
    if not adjacent:
        return "Monotonicity is not tested: fewer than two ranks."

    def weakest(key: str) -> Mapping[str, Any]:
        return max(adjacent, key=lambda a: -1.0 if a.get(key) is None else a[key])

    rule = (f"every adjacent contrast (outcome at 2k minus at k) must be positive at one-sided "
            f"alpha = {alpha} (intersection-union test)")
    if monotone.get("e3") is True:
        return (f"**Monotone across seeds (E3)**: {rule}, and all {len(adjacent)} reject "
                f"{E3_WORDS}; the outcome falls at every halving of k.")
    if monotone.get("e1") is True:
        if monotone.get("e3") is None:
            return (f"**Monotone for these checkpoints (E1)**: {rule}, and all reject {E1_WORDS}. "
                    "With one seed there is no E3 verdict.")
        worst = weakest("p_one_e3")
        return (f"**Monotone for these checkpoints only (E1)**: {rule}. All reject {E1_WORDS}, "
                f"but not {E3_WORDS}: k = {worst['k_high']} vs {worst['k_low']} has one-sided "
                f"E3 p = {p_value(worst.get('p_one_e3'))}.")
    worst = weakest("p_one_e1")
    e1 = p_inline(worst.get("p_one_e1"), name="E1 p", n_boot=worst.get("n_boot"),
                  one_sided=True)
    return (f"**Monotonicity is not shown**: {rule}; k = {worst['k_high']} vs {worst['k_low']} "
            f"does not reject (estimate {number(worst['estimate'], signed=True)} "
            f"{entry['unit']}, one-sided {e1}, E3 p = {p_value(worst.get('p_one_e3'))}). Not "
            "shown is not the same as non-monotone.")


def _short_monotone(entry: Mapping[str, Any]) -> str:
    monotone = entry.get("monotone") or {}
    if monotone.get("e3") is True:
        return "Monotone across seeds."
    if monotone.get("e1") is True:
        return "Monotone for these checkpoints only."
    return "Monotonicity not shown."


def _monotone_cell(monotone: Mapping[str, Any]) -> str:
    e3 = monotone.get("e3")
    return f"E1 {'yes' if monotone.get('e1') else 'no'}, E3 " + (
        "n/a" if e3 is None else ("yes" if e3 else "no"))
