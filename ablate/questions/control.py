"""Q2: is the ablation's subspace special? Per ablation, each of its registered controls at
the same site and each k they share: the outcome under the ablation minus its mean over the
control's draws, paired per problem, draws resampled in the bootstrap; TOST equivalence
within the configured margin (accuracy). Bits per byte is a ratio of sums, so documents
are resampled. Where both arms keep the states (k >= d) the contrast is an identity check.

    >>> CONTROL.at_site(site, ctx)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ablate.plots import plot_svd_vs_random
from ablate.questions import levels
from ablate.questions.arms import arm_names, control_pairs, either, identity_reason
from ablate.questions.base import (
    ONE_SEED_NOTE,
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
from ablate.questions.words import (
    CLAIM_COLUMNS,
    E1_WORDS,
    E3_WORDS,
    NO_VALUE,
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
    short_verdict,
)
from ablate.stats.claims import Claim, interval_claim, rounding_zero
from ablate.stats.controls import bits_per_byte_contrast, control_contrast


@dataclass
class ControlEntry(GroupEntry):
    output: ClassVar[str] = "q2"
    site: str
    intervention: str  # the ablation
    control: str  # its control (records' intervention values)
    outcome: str
    unit: str
    n_seeds: int
    seeds: list[int]
    n_items: int
    n_draws: int
    margin: float | None
    claims: list[Claim]
    notes: list[str] = field(default_factory=list)


class Control(Question):
    key = "q2"
    shared_stream = True
    outputs = ("q2",)
    claim_outputs = ("q2",)
    title = "Q2: is the top-k SVD subspace special?"

    @property
    def needs(self) -> str:  # type: ignore[override]
        shorts = list(dict.fromkeys(arm_names(control)[0] for control, _ in control_pairs()))
        return f"{either(shorts)} draws"

    def at_site(self, site: SiteOutcome, ctx: AnalysisContext) -> list[Finding]:
        found: list[Finding] = []
        for ablation in site.ablations():
            for control in site.controls_of(ablation):
                pairs = _matched(ablation, control)
                if pairs:
                    found += _compare(site, ablation, control, pairs, ctx)
        return found

    # -- presentation --------------------------------------------------------------------
    def section(self, evidence: Evidence) -> list[Block]:
        entries = evidence.analysis.get("q2", [])
        blocks: list[Block] = [Heading(2, self.title or ""), Paragraph(
            "Estimand per k: the outcome under the SVD rank-k projection minus its mean over "
            "random rank-k projections (Haar-random bases), paired per problem, with draws "
            "resampled in the bootstrap; Holm across the k of one outcome. Answer "
            "log-likelihood and bits per byte (a ratio of sums, documents resampled) are "
            "secondary outcomes.")]
        for entry in entries:
            blocks += [Heading(3, f"{head_scope(entry)}: {outcome_words(entry['outcome'])}"),
                       *entry_blocks(entry, evidence.level)]
        if not entries:
            blocks.append(Paragraph(f"Not tested: {_no_pairs()}."))
        return blocks

    def figures(self, evidence: Evidence) -> list[FigureItem]:
        items: list[FigureItem] = []
        for scope, cells in by_scope(evidence.analysis["q2"], site=True, arm=True).items():
            panels = grid(cells, ("correct", "answer_loglik", "bits_per_byte"), lambda e: e)
            a, c = _shorts(next(iter(cells.values())))
            items.append(FigureSpec("ablation-minus-control", _title(a, c), scope_text(scope), (
                f"{scope_text(scope)}. Per k: {a} minus the mean over {c} draws, paired per "
                "problem (diamond), per-seed values (open dots), Holm-adjusted p-values at the "
                "right (family: the k of one outcome; an identity check, where k >= d keeps "
                "the states, is named instead); shaded: the equivalence margin where "
                f"one is set. {intervals_caption(evidence.level)} {P_MARKS}"),
                lambda panels=panels, names=(a, c): plot_svd_vs_random(panels, names)))
        if not items:
            pairs = control_pairs()
            title = (_title(arm_names(pairs[0][1])[0], arm_names(pairs[0][0])[0])
                     if len(pairs) == 1 else "An ablation minus its control, per k")
            items.append(MissingFigure("ablation-minus-control", title,
                                       f"the run has {_no_pairs(at=True)}"))
        return items + levels.figure_items(
            evidence, ("answer_loglik", "bits_per_byte"), "loglik-bpb-vs-k",
            "Answer log-likelihood and bits per byte against log2 k",
            "answer log-likelihood or bits per byte", teacher_forced_only=True)

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        entries = analysis.get("q2", [])
        rows = [(head_scope(e), e["outcome"], str(c.get("k")), *claim_cells(c)[:5],
                 NO_VALUE if is_check(c) else p_value(c.get("p_tost_e3")),
                 short_verdict(c.get("verdict")))
                for e in entries for c in e["claims"]]
        pairs = {_shorts(e) for e in entries}
        title = ("Q2: {} minus {} rank-k, per k".format(*pairs.pop()) if len(pairs) == 1
                 else "Q2: each ablation minus its control, per k")
        return [TableView("q2", title,
                          ("group", "outcome", "k", *CLAIM_COLUMNS[:5], "TOST p E3",
                           "verdict"), tuple(rows))]

    def verdicts(self, analysis: Mapping[str, Any]) -> list[VerdictRow]:
        rows = []
        for entry in analysis.get("q2", []):
            if entry["outcome"] != "correct":
                continue
            a, c = _shorts(entry)
            rows += [VerdictRow(entry["config_label"],
                                f"{a} − {c} accuracy{_at(claim)}, {claim['unit']}",
                                scope_text(scope_of(entry, site=False)), claim, entry["site"])
                     for claim in sorted(entry["claims"], key=_k) if not is_check(claim)]
        return rows

    def summary(self, analysis: Mapping[str, Any]) -> list[str]:
        items = []
        for entry in analysis.get("q2", []):
            if entry["outcome"] != "correct":
                continue
            a, c = _shorts(entry)
            parts = [f"k={claim.get('k')}: {short_verdict(claim.get('verdict'))}"
                     if is_check(claim) else
                     f"k={claim.get('k')}: {number(claim['estimate'], signed=True)} pp "
                     f"({interval_words(claim)}, {_short_verdict(claim, c)})"
                     for claim in sorted(entry["claims"], key=_k)]
            items.append(f"Q2, {head_scope(entry)}: {a} minus {c} accuracy, "
                         + "; ".join(parts) + ".")
        return items


CONTROL = Control()


def _matched(ablation: Arm, control: Arm) -> list[tuple[Any, Any]]:
    """(ablation k, control k) to compare: equal ks when the control is matched on k, else
    every k of the ablation against the control's one condition."""
    if "k" in control.role.matched_on:
        return [(k, k) for k in sorted(set(ablation.ks) & set(control.ks))]
    if len(control.arrays) != 1:
        return []
    (only,) = control.arrays
    return [(k, only) for k in ablation.arrays]


def _compare(site: SiteOutcome, ablation: Arm, control: Arm, pairs: list[tuple[Any, Any]],
             ctx: AnalysisContext) -> list[Finding]:
    """One entry per (ablation, control) pair at a site and outcome: a claim per matched
    k (Holm family: the site's outcome, shared with any other pair there)."""
    scale, unit, outcome = site.scale, site.unit, site.outcome
    family = site.group.family("q2", site.site, outcome)
    bpb = site.n_bytes is not None
    margin = ctx.tost_margin if outcome == "correct" else None
    keys = {**site.keys, "intervention": ablation.name, "control": control.name}
    d = ctx.dims.get(site.group.config_label)
    claims, found = [], []
    for k, k_control in pairs:
        a, c = ablation.arrays[k].values, control.arrays[k_control].values
        what = (f"{ablation.short}{_rank(k)} {'bits per byte' if bpb else outcome} differs "
                f"from {control.short}{_rank(k_control)}")
        kept = identity_reason(ablation, k, d)
        # Both arms keep the states (k >= d): the same function, so a check, not a test.
        identity = kept if kept and identity_reason(control, k_control, d) else None
        if bpb:
            result = bits_per_byte_contrast(a, c, site.n_bytes, **ctx.options)
            claim = interval_claim(result, claim=what, family=family, unit=unit)
            claim.identity = identity
            claims.append(claim.with_extra(k=k, p_tost_e1=None, p_tost_e3=None,
                                           equivalent_e1=None, equivalent_e3=None))
            continue
        result = control_contrast(scale * a, scale * c, **ctx.options)
        claim = interval_claim(result, claim=what, family=family, unit=unit)
        claim.identity = identity
        p_tost_e1 = None if margin is None else result.tost(margin, "e1")
        p_tost_e3 = None if margin is None else result.tost(margin, "e3")
        claim.with_extra(k=k, p_tost_e1=p_tost_e1, p_tost_e3=p_tost_e3,
                         equivalent_e1=_below(p_tost_e1, ctx.alpha),
                         equivalent_e3=_below(p_tost_e3, ctx.alpha))
        claims.append(claim)
        if identity is not None or rounding_zero(claim):
            continue  # a check: its variance components are rounding noise
        found.append(variance_component(
            keys, f"q2 {ablation.short.lower()} - {control.short.lower()}"
                  f"{'' if k is None else f' k={k}'} ({outcome}, {unit})",
            scale * (a - c.mean(axis=1))))
    reference = site.reference
    notes = [] if len(reference.seeds) >= 2 else [ONE_SEED_NOTE]
    if margin is None and outcome == "correct":
        notes.append(f"no equivalence margin: 'no different from {control.short}' cannot be "
                     "claimed")
    entry = ControlEntry(**keys, outcome=outcome, unit=unit, n_seeds=len(reference.seeds),
                         seeds=list(reference.seeds), n_items=len(reference.item_ids),
                         n_draws=len(control.arrays[pairs[0][1]].draws), margin=margin,
                         claims=claims, notes=notes)
    return [entry, *found]


def _below(p: float | None, alpha: float) -> bool | None:
    """Whether an equivalence p rejects at ``alpha``; None when there is no p."""
    return None if p is None or not np.isfinite(p) else bool(p < alpha)


def _at(claim: Mapping[str, Any]) -> str:
    return "" if claim.get("k") is None else f" at k = {claim['k']}"


def _rank(k: Any) -> str:
    return "" if k is None else f" rank-{k}"


def _k(claim: Mapping[str, Any]) -> int:
    return -1 if claim.get("k") is None else int(claim["k"])


def _shorts(entry: Mapping[str, Any]) -> tuple[str, str]:
    """Short names of an entry's ablation and control ("SVD", "random")."""
    return arm_names(entry["intervention"])[0], arm_names(entry["control"])[0]


def _title(ablation: str, control: str) -> str:
    return f"{ablation} minus {control} rank-k projection, per k"


def _no_pairs(*, at: bool = False) -> str:
    """"no random_rank_k draws share a k with svd_rank_k", from the registered controls."""
    share = "at a k that also has" if at else "share a k with"
    return "; ".join(f"no {control} draws {share} {ablation}"
                     for control, ablation in control_pairs()) or "no registered control"


def entry_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One claim per k of a ``q2`` entry, each with its equivalence statement."""
    outcome = outcome_words(entry["outcome"])
    a, c = _shorts(entry)
    blocks: list[Block] = []
    for claim in sorted(entry["claims"], key=_k):
        at = "" if claim.get("k") is None else f"At k = {claim['k']}, "
        lead = (f"{at}{a} minus {c} ({outcome}, mean over {entry['n_draws']} {c} draws per "
                f"seed, paired per problem) is {number(claim['estimate'], signed=True)} "
                f"{entry['unit']}.")
        lead = lead[0].upper() + lead[1:]
        subject = f"{at}{a} minus {c} ({outcome})"
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"),
                               extra=[equivalence_text(claim, entry.get("margin"), c)],
                               subject=subject[0].upper() + subject[1:])
    return blocks + note_blocks(entry)


def equivalence_text(claim: Mapping[str, Any], margin: Any, control: str = "random") -> str:
    """TOST wording by verdict: "no different from random" (``control``: its short name)
    only when equivalence is shown."""
    verdict = claim.get("verdict")
    if margin is None:
        if verdict in ("not_significant", "one_seed_not_significant", "these_checkpoints_only",
                       "these_checkpoints_e3_not_computed", "not_significant_e3_not_computed",
                       "not_significant_e1_not_computed"):
            return ("No equivalence margin is set ([stats] tost_margin), so 'no different from "
                    f"{control}' cannot be claimed.")
        return ""
    bound = f"±{margin:g} {claim.get('unit', '')}"
    tost = f"TOST equivalence, E3 p = {p_value(claim.get('p_tost_e3'))}"
    equivalent = claim.get("equivalent_e3")
    if equivalent is None:
        tost_e1 = claim.get("p_tost_e1")
        if tost_e1 is None:
            return ""
        # Whether TOST rejects at the configured alpha was decided in the analysis.
        shown = ("equivalent" if claim.get("equivalent_e1") else "not shown equivalent")
        tost = p_inline(tost_e1, name="TOST E1 p", n_boot=claim.get("n_boot"), one_sided=True)
        return (f"Equivalence across seeds needs >= 2 seeds; {E1_WORDS} the difference is "
                f"{shown} within {bound} ({tost}).")
    if verdict == "across_seeds":
        return (f"The difference is real but smaller than the margin {bound} ({tost})."
                if equivalent else "")
    if equivalent:
        return f"**No different from {control} within {bound}** {E3_WORDS} ({tost})."
    if verdict == "these_checkpoints_only":
        return (f"{E3_WORDS.capitalize()}, it is neither shown to differ from {control} nor "
                f"shown equivalent within {bound} ({tost}).")
    return (f"Not shown to differ from {control}, and not shown equivalent within {bound} "
            f"({tost}): the data cannot tell which.")


def _short_verdict(claim: Mapping[str, Any], control: str) -> str:
    """The verdict of one k in a summary line; equivalence is named only where the verdict
    does not say that the difference is real."""
    if claim.get("equivalent_e3") is True:
        if claim.get("verdict") == "across_seeds":
            return "differs across seeds, by less than the margin"
        if claim.get("verdict") == "these_checkpoints_only":
            return ("differs for these checkpoints only; across seeds equivalent to "
                    f"{control} within the margin")
        return f"equivalent to {control} within the margin"
    return {"across_seeds": "differs across seeds",
            "these_checkpoints_only": "differs for these checkpoints only",
            "not_significant": "not shown to differ",
            "one_seed_these_checkpoints": "differs for this checkpoint (one seed)",
            "one_seed_not_significant": "not shown to differ (one seed)",
            "these_checkpoints_e3_not_computed": "differs for these checkpoints (E3 not "
                                                 "computed)",
            "not_significant_e3_not_computed": "not shown to differ (E1; E3 not computed)",
            "not_significant_e1_not_computed": "not shown to differ (E3)"}.get(
                claim.get("verdict") or "", "n/a")
