"""Q5: matrix-CODI latent thoughts, on unablated rows: the effective rank of each latent
thought Z_1..Z_n (column ``latent_erank``: its profile over latent steps, and the mean
over a problem's thoughts against depth, adjusted for length as in Q4) and the number of
latents (L_n minus the no-thought baseline L_0, per base model). Only runs whose records
carry latent thoughts show this question.

Latent thoughts are numbered from 1 here (Z_1 is the first thought); the ablation site
``latent.j`` of the study is 0-based and edits Z_{j+1}.

    >>> LATENTS.at_group(group, ctx), LATENTS.at_run(records, ctx)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ablate.errors import AblateError
from ablate.plots import DepthPanel, plot_depth
from ablate.plots.latent import plot_latent_profiles
from ablate.questions.base import (
    ONE_SEED_NOTE,
    AnalysisContext,
    Evidence,
    FigureItem,
    FigureSpec,
    Finding,
    GroupEntry,
    GroupRows,
    MissingFigure,
    Question,
    RunNote,
    VerdictRow,
    variance_component,
)
from ablate.questions.blocks import Block, Heading, Paragraph, TableView
from ablate.questions.depth import (
    association_texts,
    depth_claim_blocks,
    depth_claims,
    depth_summary,
    erank_depth_panel,
)
from ablate.questions.figures import (
    GROUP_KEYS,
    by_scope,
    intervals_caption,
    scope_of,
    scope_text,
)
from ablate.questions.iterations import erank_panel
from ablate.questions.words import (
    CLAIM_COLUMNS,
    change_text,
    claim_blocks,
    claim_cells,
    head_scope,
    interval_words,
    is_check,
    note_blocks,
    number,
    outcome_words,
    p_words,
    verdict_text,
)
from ablate.stats.claims import Claim, GroupKey, interval_claim
from ablate.stats.depth import depth_association
from ablate.stats.frames import (
    SeedItemArray,
    check_aligned,
    item_covariates,
    pivot_condition,
    pivot_erank,
)
from ablate.stats.intervals import paired_difference
from ablate.stats.iterations import erank_trend, iteration_weights
from ablate.stats.multiplicity import benjamini_hochberg

LATENT_ERANK = "latent_erank"
START = 0  # every latent thought is a step of thinking (unlike M(0), the embedding)
# outcome -> (scale from the record column, unit) for the number-of-latents contrasts.
LATENT_OUTCOMES = {"correct": (100.0, "pp"), "answer_loglik": (1.0, "nats")}
LATENT_SUFFIX = re.compile(r"-L\d+$")
INTRO = (
    "Matrix-CODI thinks in latent matrices Z_1..Z_n (numbered from 1 here; the ablation "
    "site latent.j edits Z_(j+1)). On unablated rows, three questions: does the effective "
    "rank (Roy and Vetterli) change from one latent thought to the next (per seed: the "
    "least-squares slope over latent steps, primary, and Z_n minus Z_1, secondary); does "
    "the mean effective rank over a problem's latent thoughts follow reasoning depth once "
    "length is accounted for (the depth coefficient of erank ~ depth + log(n_tokens), as in "
    "Q4); and does thinking help: accuracy and answer log-likelihood with n latent thoughts "
    "minus without any (L_n minus L_0, paired per problem). Problems of unknown depth (no "
    "calculator annotations) stay in the profile and the L_n contrasts, and are left out "
    "of the depth statistics and counted. A single seed is a description of one "
    "checkpoint, not an inference about training runs.")
NO_LATENTS = ("Not tested: no unablated row carries latent thoughts (a non-empty "
              "latent_erank, as `ablate codi study` writes for n_latents > 0).")
NO_LATENT_BASELINE = ("The number of latents is not tested: the run has no n_latents = 0 "
                      "(no-thought) baseline to compare with.")


@dataclass
class LatentEntry(GroupEntry):
    output: ClassVar[str] = "q5"
    n_latents: int
    n_seeds: int
    seeds: list[int]
    n_items: int
    latents: list[int]
    mean_profile: Any
    per_seed_profile: Any
    claims: list[Claim]
    depth: dict[str, Any] | None
    notes: list[str]


@dataclass
class LatentCountEntry(GroupEntry):
    output: ClassVar[str] = "q5_latents"
    outcome: str
    unit: str
    reference_n_latents: int
    n_latents: list[int]
    n_seeds: int
    seeds: list[int]
    n_items: int
    means: list[dict[str, Any]]
    claims: list[Claim]
    notes: list[str]


def has_latents(rows: pd.DataFrame) -> bool:
    """True when some row carries a non-empty ``latent_erank`` list."""
    if LATENT_ERANK not in rows.columns:
        return False
    return any(value is not None and len(value) > 0 for value in rows[LATENT_ERANK])


def base_label(config_label: str) -> str:
    """The model behind a study group: "codi-L6" -> "codi" (the study's "-L<n>" suffix)."""
    return LATENT_SUFFIX.sub("", config_label)


class Latents(Question):
    key = "q5"
    shared_stream = True
    outputs = ("q5", "q5_latents")
    claim_outputs = ("q5", "q5_latents")
    title = "Q5: matrix-CODI latent thoughts"
    headline_figure = "latent-erank-profile"
    needs = "latent_erank"

    def at_group(self, group: GroupRows, ctx: AnalysisContext) -> list[Finding]:
        """The erank profile over latent steps and the depth association of the mean latent
        erank, for one group (one number of latents)."""
        unablated, key = group.unablated, group.key
        if unablated.empty or not has_latents(unablated):
            return []
        try:
            erank = pivot_erank(unablated, column=LATENT_ERANK)
        except AblateError as error:
            return [RunNote(f"{key.as_dict()} Q5: {error}")]
        values = erank.values  # (n_seeds, n_items, n_latents)
        n_latents = values.shape[2]
        if not np.all(np.isfinite(values)):
            return [RunNote(f"{key.as_dict()} Q5: latent_erank has NaN/inf: not run")]
        notes: list[str] = []
        found, claims = _profile_claims(key, erank, ctx, notes)
        covariates = item_covariates(unablated, erank.item_ids)
        more, depth, depth_found = _depth(key, values.mean(axis=2), covariates, ctx, notes)
        found += more
        claims += depth_found
        if depth is not None:
            depth["per_latent"] = _per_latent_depth(values, covariates, ctx)
        if len(erank.seeds) < 2:
            notes.append(ONE_SEED_NOTE)
        return [*found, LatentEntry(
            **key.as_dict(), n_latents=n_latents, n_seeds=len(erank.seeds),
            seeds=list(erank.seeds), n_items=len(erank.item_ids),
            latents=list(range(1, n_latents + 1)), mean_profile=values.mean(axis=(0, 1)),
            per_seed_profile=values.mean(axis=1), claims=claims, depth=depth, notes=notes)]

    def at_run(self, records: pd.DataFrame, ctx: AnalysisContext) -> list[Finding]:
        """Per base model (task, mode, T and config_label without "-L<n>") and outcome,
        each number of latents n > 0 minus n = 0 on unablated rows, paired per (train_seed,
        item). Nothing when the run has no n = 0 baseline."""
        if "n_latents" not in records.columns:
            return []
        unablated = records[records["intervention"] == "none"]
        unablated = unablated.assign(
            base_label=unablated["config_label"].astype(str).map(base_label))
        found: list[Finding] = []
        keys = ["base_label", "task", "mode", "n_iterations"]
        for (label, task, mode, n_iterations), rows in unablated.groupby(keys, sort=True):
            counts = sorted({int(n) for n in rows["n_latents"].dropna()})
            if 0 not in counts or len(counts) < 2:
                continue
            group = GroupKey(str(label), str(task), str(mode), int(n_iterations))
            for outcome, (scale, unit) in LATENT_OUTCOMES.items():
                found += _latent_counts(group, rows, counts, outcome, scale, unit, ctx)
        return found

    # -- presentation --------------------------------------------------------------------
    def applies(self, evidence: Evidence) -> bool:
        """Only a matrix-CODI study (records with latent thoughts' ranks) gets Q5."""
        return "latent_erank" in evidence.records.columns or bool(evidence.analysis.get("q5"))

    def section(self, evidence: Evidence) -> list[Block]:
        analysis, level = evidence.analysis, evidence.level
        q5, counts = analysis.get("q5", []), analysis.get("q5_latents", [])
        blocks: list[Block] = [Heading(2, self.title or ""), Paragraph(INTRO)]
        for entry in q5:
            blocks += [Heading(3, f"{head_scope(entry, site=False)}: {entry['n_latents']} "
                                  "latent thoughts"), *entry_blocks(entry, level)]
        if not q5:
            blocks.append(Paragraph(NO_LATENTS))
        for entry in counts:
            blocks += [Heading(3, f"Number of latents, {head_scope(entry, site=False)}: "
                                  f"{outcome_words(entry['outcome'])}"),
                       *counts_blocks(entry, level)]
        if q5 and not counts:
            blocks.append(Paragraph(NO_LATENT_BASELINE))
        return blocks

    def figures(self, evidence: Evidence) -> list[FigureItem]:
        """The profile of each latent thought and the depth plot, one per (task, mode, T)."""
        profile = "Effective rank of each latent thought (matrix-CODI)"
        by_depth = ("Mean latent effective rank by depth, and the length-adjusted partial "
                    "plot")
        records, intervals = evidence.records, intervals_caption(evidence.level)
        profiles: list[FigureItem] = []
        depths: list[FigureItem] = []
        for scope, cells in by_scope(evidence.analysis.get("q5", []), site=False).items():
            entries = [cells[key] for key in sorted(cells)]
            profiles.append(FigureSpec("latent-erank-profile", profile, scope_text(scope), (
                f"{scope_text(scope)}. Effective rank of each latent thought Z_j (unablated), "
                "one line per group (number of latents): mean over seeds and problems; thin: "
                "one seed; shaded: 25-75% of the problems (seed-mean profiles). The legend "
                f"gives the slope per latent step. {intervals}"),
                lambda entries=entries: plot_latent_profiles(
                    [erank_panel(evidence, entry, column=LATENT_ERANK) for entry in entries])))
            with_depth = [entry for entry in entries if entry.get("depth")]
            if with_depth:
                depths.append(FigureSpec("latent-erank-by-depth", by_depth, scope_text(scope), (
                    f"{scope_text(scope)}. Top: mean effective rank over the latent thoughts "
                    "(mean over seeds) per problem by the number of calculator annotations, n "
                    "problems per depth below each violin; problems of unknown depth are left "
                    "out. Bottom: both residualised on log n_tokens, with the length-adjusted "
                    "slope."),
                    lambda entries=with_depth: plot_depth(
                        [latent_depth_panel(records, entry) for entry in entries])))
        if not profiles:
            reason = ("the records have no latent thoughts: no unablated row carries a "
                      "non-empty latent_erank (written by `ablate codi study` runs with "
                      "n_latents > 0)")
            return [MissingFigure("latent-erank-profile", profile, reason),
                    MissingFigure("latent-erank-by-depth", by_depth, reason)]
        if not depths:
            depths.append(MissingFigure("latent-erank-by-depth", by_depth, (
                "no problem with latent thoughts has a known depth (calculator annotations) "
                "taking >= 2 values")))
        return profiles + depths

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        q5 = [(head_scope(e, site=False), c["claim"], c["unit"], c["role"], *claim_cells(c))
              for e in analysis.get("q5", []) for c in e["claims"]]
        counts = [(head_scope(e, site=False), e["outcome"], f"L{c['n_latents']} minus L0",
                   e["unit"], *claim_cells(c))
                  for e in analysis.get("q5_latents", []) for c in e["claims"]]
        return [TableView("q5", "Q5: effective rank of the latent thoughts (matrix-CODI)",
                          ("group", "claim", "unit", "role", *CLAIM_COLUMNS), tuple(q5)),
                TableView("q5_latents", "Q5: number of latent thoughts, L_n minus L_0",
                          ("model", "outcome", "contrast", "unit", *CLAIM_COLUMNS),
                          tuple(counts))]

    def verdicts(self, analysis: Mapping[str, Any]) -> list[VerdictRow]:
        rows = [VerdictRow(entry["config_label"], "latent effective rank per latent step"
                           if claim.get("aspect") == "profile" else "mean latent erank per "
                           "calculator annotation, length-adjusted",
                           scope_text(scope_of(entry, site=False)), claim)
                for entry in analysis.get("q5", []) for claim in entry["claims"]
                if claim["role"] == "primary" and not is_check(claim)]
        rows += [VerdictRow(entry["config_label"], f"accuracy with {claim['n_latents']} latent "
                            f"thoughts minus none, {claim['unit']}",
                            scope_text(scope_of(entry, site=False)), claim)
                 for entry in analysis.get("q5_latents", []) if entry["outcome"] == "correct"
                 for claim in entry["claims"] if not is_check(claim)]
        return rows

    def summary(self, analysis: Mapping[str, Any]) -> list[str]:
        items = []
        for entry in analysis.get("q5", []):
            for claim in (c for c in entry["claims"] if c["role"] == "primary"):
                what = (f"latent effective rank "
                        f"{change_text(claim['estimate'], '', signed=False)}".rstrip()
                        + " per latent step" if claim.get("aspect") == "profile" else
                        f"{number(claim['estimate'], signed=True)} mean latent erank per "
                        "calculator annotation, length-adjusted")
                items.append(f"Q5, {head_scope(entry, site=False)}: {what} "
                             f"({interval_words(claim)}): {verdict_text(claim['verdict'])}.")
        for entry in analysis.get("q5_latents", []):
            if entry["outcome"] != "correct":
                continue
            for claim in entry["claims"]:
                items.append(f"Q5, {head_scope(entry, site=False)}: accuracy with "
                             f"{claim['n_latents']} latent thoughts minus none "
                             f"{number(claim['estimate'], signed=True)} pp "
                             f"({interval_words(claim)}): {verdict_text(claim['verdict'])}.")
        return items


LATENTS = Latents()


def _profile_claims(group: GroupKey, erank: SeedItemArray, ctx: AnalysisContext,
                    notes: list[str]) -> tuple[list[Finding], list[Claim]]:
    """Slope per latent step (primary) and Z_n minus Z_1 (secondary), over all latents."""
    values = erank.values
    if values.shape[2] < START + 2:
        notes.append(f"{values.shape[2]} latent thought(s): the profile over latent steps "
                     "needs >= 2 latents, so its slope is not tested")
        return [], []
    trend = erank_trend(values, start=START, **ctx.options)
    n_latents = values.shape[2]
    slope_weights, _ = iteration_weights(n_latents, START)
    variance = variance_component(group.as_dict(), "q5 slope (erank per latent step)",
                                  values @ slope_weights)
    return [variance], [
        interval_claim(trend.slope, claim="effective rank changes over latent steps",
                       family=group.family("q5"), unit="erank per latent step")
        .with_extra(aspect="profile"),
        # The secondary claim belongs to the same family as the primary one.
        interval_claim(trend.last_minus_first,
                       claim=f"effective rank differs between latent {n_latents} and 1",
                       family=group.family("q5"), unit="erank", role="secondary")
        .with_extra(aspect="profile"),
    ]


def _depth(group: GroupKey, mean_erank: np.ndarray, covariates: pd.DataFrame,
           ctx: AnalysisContext, notes: list[str]
           ) -> tuple[list[Finding], dict[str, Any] | None, list[Claim]]:
    """Mean latent erank per item (n_seeds, n_items) against depth, adjusted for log
    n_tokens, as Q4 does for M(T). Returns run notes, the summary (None when the primary
    depth cannot be tested) and the claims."""
    found, results, claims = depth_claims(group, mean_erank, covariates, ctx,
                                          measure="mean latent effective rank",
                                          families=("q5-depth", "q5-depth-lines"),
                                          question="Q5", notes=notes)
    claims = [claim.with_extra(aspect="depth") for claim in claims]
    primary = results.get("depth_annotations")
    if primary is None:
        notes.append("depth (calculator annotations) is known for fewer than 3 problems or "
                     "takes one value: the depth association is not tested")
        return found, None, claims
    if primary.n_excluded:
        notes.append(f"{primary.n_excluded} problem(s) with unknown depth excluded from the "
                     "depth statistics")
    return found, depth_summary(primary, mean_erank, covariates, n_boot=ctx.n_boot), claims


def _per_latent_depth(values: np.ndarray, covariates: pd.DataFrame,
                      ctx: AnalysisContext) -> dict[str, Any]:
    """Exploratory: the length-adjusted depth slope of each latent's erank, values
    (n_seeds, n_items, n_latents), Benjamini-Hochberg over latents (E3 p with >= 2 seeds,
    else the E1 bootstrap p)."""
    depth = covariates["depth_annotations"].to_numpy()
    n_tokens = covariates["n_tokens"].to_numpy()
    results = [depth_association(values[:, :, j], depth, n_tokens, rank_statistics=False,
                                 model_e1=False, **ctx.options).adjusted_slope
               for j in range(values.shape[2])]
    p_name = "p_e3" if values.shape[0] >= 2 else "p_e1"
    p_values = [getattr(result, p_name) for result in results]
    return {"label": "exploratory", "latents": list(range(1, values.shape[2] + 1)),
            "n_boot": ctx.n_boot if p_name == "p_e1" else None,
            "estimate": [r.estimate for r in results], "e1": [list(r.e1) for r in results],
            "e3": [list(r.e3) for r in results], "p": p_values, "p_method": p_name,
            "p_bh": benjamini_hochberg(p_values).tolist(),
            "unit": "erank per unit of depth_annotations"}


def _latent_counts(group: GroupKey, rows: pd.DataFrame, counts: list[int], outcome: str,
                   scale: float, unit: str, ctx: AnalysisContext) -> list[Finding]:
    if outcome not in rows.columns or not rows[outcome].notna().any():
        return []
    arrays: dict[int, SeedItemArray] = {}
    try:
        for n in counts:
            arrays[n] = pivot_condition(rows, outcome, n_latents=n)
            check_aligned(arrays[0], arrays[n], f"L{n} ({outcome})")
    except AblateError as error:
        return [RunNote(f"{group.as_dict()} Q5 number of latents, {outcome}: {error}")]
    if any(not np.all(np.isfinite(a.values)) for a in arrays.values()):
        return [RunNote(f"{outcome} has missing values at {group.as_dict()}: Q5 number of "
                        "latents skipped")]
    baseline = scale * arrays[0].values
    claims = []
    for n in counts[1:]:
        result = paired_difference(scale * arrays[n].values, baseline, **ctx.options)
        claims.append(interval_claim(result, claim=f"{outcome} differs between {n} latents "
                                     "and none", family=group.family("q5-latents", outcome),
                                     unit=unit).with_extra(n_latents=n))
    reference = arrays[0]
    return [LatentCountEntry(
        **group.as_dict(), outcome=outcome, unit=unit, reference_n_latents=0,
        n_latents=counts, n_seeds=len(reference.seeds), seeds=list(reference.seeds),
        n_items=len(reference.item_ids),
        means=[{"n_latents": n, "estimate": float(scale * arrays[n].values.mean()),
                "per_seed": scale * arrays[n].values.mean(axis=1)} for n in counts],
        claims=claims, notes=[] if len(reference.seeds) >= 2 else [ONE_SEED_NOTE])]


def _profile_text(entry: Mapping[str, Any]) -> str:
    profile = entry.get("mean_profile") or []
    steps = ", ".join(f"Z_{j} {number(value)}"
                      for j, value in zip(entry.get("latents") or [], profile, strict=True))
    return (f"Effective rank of each latent thought on unablated rows, mean over "
            f"{entry['n_seeds']} seed(s) and {entry['n_items']} problems: {steps}.")


def entry_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q5`` entry: the profile over latent steps, its slope and Z_n minus Z_1, then
    the depth association of the mean latent erank with its exploratory per-latent scan."""
    blocks: list[Block] = [Paragraph(_profile_text(entry))]
    n_latents = entry["n_latents"]
    for claim in (c for c in entry["claims"] if c.get("aspect") == "profile"):
        if claim["role"] == "primary":
            lead = (f"Over the {n_latents} latent thoughts, effective rank "
                    f"{change_text(claim['estimate'], 'erank per latent step')}.")
        else:
            lead = (f"Z_{n_latents} minus Z_1: {number(claim['estimate'], signed=True)} "
                    "erank.")
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"))
    depth = entry.get("depth")
    if depth:
        blocks.append(Paragraph(
            f"Depth: the mean effective rank over the {n_latents} latent thoughts of each "
            f"problem, over {depth['n_items']} problems "
            f"({depth.get('n_excluded_unknown_depth', 0)} excluded for unknown depth); all "
            "problems are used, since conditioning on correctness would open a collider "
            "path."))
        blocks += depth_claim_blocks(
            [c for c in entry["claims"] if c.get("aspect") == "depth"], level,
            subject="mean latent effective rank",
            length_adjusted=bool(depth.get("length_adjusted")))
        texts = association_texts(depth, level) + [_per_latent_text(depth.get("per_latent"))]
        blocks += [Paragraph(text) for text in texts if text]
    return blocks + note_blocks(entry)


def _per_latent_text(scan: Mapping[str, Any] | None) -> str:
    if not scan or not scan.get("latents"):
        return ""
    which = "E3" if scan.get("p_method") == "p_e3" else "E1 bootstrap"
    n_boot = scan.get("n_boot")
    texts, caveats = [], []
    for j, estimate, p, p_bh in zip(scan["latents"], scan["estimate"], scan["p"],
                                    scan["p_bh"], strict=True):
        statement, why = p_words(p_bh, name="BH p", n_boot=n_boot, raw=p)
        texts.append(f"Z_{j} {number(estimate, signed=True)} ({statement})")
        caveats += [why] if why and why not in caveats else []
    return (f"Exploratory, not a pre-registered claim: the length-adjusted depth slope of "
            f"each latent thought's effective rank (erank per calculator annotation; "
            f"{which} p-values, Benjamini-Hochberg over the latents): {', '.join(texts)}."
            + "".join(f" Note: {why}." for why in caveats))


def _level(value: Any, unit: str) -> str:
    return f"{number(value)}%" if unit == "pp" else f"{number(value)} {unit}"


def counts_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q5_latents`` entry: the outcome at each number of latents, then each L_n minus
    L_0 contrast."""
    outcome, unit = outcome_words(entry["outcome"]), entry["unit"]
    levels = ", ".join(f"{m['n_latents']} latent thoughts {_level(m['estimate'], unit)}"
                       for m in entry.get("means", []))
    blocks: list[Block] = [Paragraph(
        f"{outcome.capitalize()} on unablated rows, mean over {entry['n_seeds']} seed(s) and "
        f"{entry['n_items']} problems: {levels}. Each contrast pairs the same problems and "
        "checkpoint.")]
    for claim in entry["claims"]:
        lead = (f"With {claim['n_latents']} latent thoughts instead of none, {outcome} "
                f"{change_text(claim['estimate'], unit)}.")
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"))
    return blocks + note_blocks(entry)


def latent_depth_panel(records: pd.DataFrame, entry: Mapping[str, Any]) -> DepthPanel:
    """A ``q5`` entry with the seed-mean of the mean latent erank, depth and n_tokens per
    item; the panel's entry holds only the depth claims and summary, as a ``q4`` entry
    would, so ``plot_depth`` draws the depth slope."""
    depth = entry.get("depth") or {}
    view = {**{key: entry[key] for key in GROUP_KEYS},
            "claims": [c for c in entry["claims"] if c.get("aspect") == "depth"],
            "length_adjusted": depth.get("length_adjusted"),
            "erank_length_spearman": depth.get("erank_length_spearman")}
    return erank_depth_panel(records, view, LATENT_ERANK, lambda values: values.mean(axis=2),
                        measure="mean latent erank")
