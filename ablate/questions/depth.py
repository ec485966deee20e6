"""Q4: does effective rank follow reasoning depth? On unablated rows, per head: the
effective rank of M(T) against the number of calculator annotations (primary) or solution
lines (secondary), adjusted for log n_tokens because length confounds effective rank; rank
correlations, the agreement of the two depth measures and the length check. Q5 uses the
same depth claims for the latent thoughts.

    >>> DEPTH.at_group(group, ctx)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ablate.errors import AblateError
from ablate.plots import DepthPanel, plot_depth, plot_erank_vs_length
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
)
from ablate.questions.blocks import Block, Heading, Paragraph, TableView
from ablate.questions.figures import by_scope, group_rows, scope_of, scope_text
from ablate.questions.iterations import ERANK, has_erank
from ablate.questions.words import (
    CLAIM_COLUMNS,
    E1_WORDS,
    claim_blocks,
    claim_cells,
    figure_ref,
    head_scope,
    interval_words,
    is_check,
    note_blocks,
    number,
    p_words,
    pair,
    pct,
    verdict_text,
)
from ablate.stats.claims import Claim, GroupKey, interval_claim
from ablate.stats.depth import DepthResult, RankAssociation, depth_agreement, depth_association
from ablate.stats.frames import item_covariates, pivot_erank

DEPTH_COLUMNS = (("depth_annotations", "primary"), ("depth_lines", "secondary"))


@dataclass
class DepthEntry(GroupEntry):
    output: ClassVar[str] = "q4"
    erank_iteration: int
    n_items: int
    n_excluded_unknown_depth: int
    length_adjusted: bool
    kendall_tau_b: dict[str, Any] | None
    partial_spearman: dict[str, Any] | None
    depth_agreement: dict[str, Any]
    erank_length_spearman: float
    claims: list[Claim]
    notes: list[str]


class Depth(Question):
    key = "q4"
    shared_stream = True
    outputs = ("q4",)
    claim_outputs = ("q4",)
    title = "Q4: does effective rank follow reasoning depth?"
    needs = "depth"

    def at_group(self, group: GroupRows, ctx: AnalysisContext) -> list[Finding]:
        """Erank at M(T) against depth, adjusted for length."""
        unablated = group.unablated
        if unablated.empty or not has_erank(unablated):
            return []
        if "depth_annotations" not in unablated.columns:
            return []
        if not unablated["depth_annotations"].notna().any():
            return []
        erank = pivot_erank(unablated)
        final = erank.values[:, :, -1]  # (n_seeds, n_items): erank of M(T)
        covariates = item_covariates(unablated, erank.item_ids)
        notes: list[str] = []
        found, results, claims = depth_claims(group.key, final, covariates, ctx,
                                              measure="effective rank at M(T)",
                                              families=("q4", "q4-lines"), question="Q4",
                                              notes=notes)
        if "depth_annotations" not in results:
            return found
        summary = depth_summary(results["depth_annotations"], final, covariates,
                                n_boot=ctx.n_boot)
        notes += ([f"{summary['n_excluded_unknown_depth']} item(s) with unknown depth "
                   "excluded"] if summary["n_excluded_unknown_depth"] else [])
        notes += [] if len(erank.seeds) >= 2 else [ONE_SEED_NOTE]
        return [*found, DepthEntry(**group.key.as_dict(),
                                   erank_iteration=erank.values.shape[2] - 1, **summary,
                                   claims=claims, notes=notes)]

    # -- presentation --------------------------------------------------------------------
    def section(self, evidence: Evidence) -> list[Block]:
        entries = evidence.analysis.get("q4", [])
        blocks: list[Block] = [Heading(2, self.title or ""), Paragraph(
            "Depth is the number of calculator annotations <<...=...>> in the solution "
            "(primary) or of solution lines before #### (secondary). Length confounds "
            "effective rank, so the estimand is the depth coefficient of erank ~ depth + "
            "log(n_tokens), per seed.")]
        for entry in entries:
            blocks += [Heading(3, head_scope(entry, site=False)),
                       *entry_blocks(entry, evidence.level)]
        if not entries:
            blocks.append(Paragraph("Not tested: no item has a known depth together with "
                                    "effective rank on unablated rows."))
        return blocks

    def figures(self, evidence: Evidence) -> list[FigureItem]:
        records = evidence.records
        by_depth = "Effective rank by depth, and the length-adjusted partial plot"
        by_length = "Effective rank against length (the confounding diagnostic)"
        items: list[FigureItem] = []
        for scope, cells in by_scope(evidence.analysis["q4"], site=False).items():
            entries = [cells[key] for key in sorted(cells)]
            items.append(FigureSpec("erank-by-depth", by_depth, scope_text(scope), (
                f"{scope_text(scope)}. Top: effective rank of M(T) (mean over seeds) per item "
                "by the number of calculator annotations, n items per depth above each violin. "
                "Bottom: both residualised on log n_tokens, with the length-adjusted slope."),
                lambda entries=entries: plot_depth([depth_panel(records, e) for e in entries])))
            items.append(FigureSpec("erank-vs-length", by_length, scope_text(scope), (
                f"{scope_text(scope)}. If effective rank rises with length, an unadjusted "
                "depth association is confounded; colour: depth."),
                lambda entries=entries: plot_erank_vs_length(
                    [depth_panel(records, e) for e in entries])))
        if not items:
            reason = ("no item has a known depth (calculator annotations <<...=...>>, as in "
                      "GSM8K solutions) together with erank_per_iter on unablated rows")
            items = [MissingFigure("erank-by-depth", by_depth, reason),
                     MissingFigure("erank-vs-length", by_length, reason)]
        return sorted(items, key=lambda item: item.name != "erank-by-depth")

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        rows = [(head_scope(e, site=False), c["claim"], c["role"], *claim_cells(c))
                for e in analysis.get("q4", []) for c in e["claims"]]
        return [TableView("q4", "Q4: effective rank and depth, adjusted for length",
                          ("group", "claim", "role", *CLAIM_COLUMNS), tuple(rows))]

    def verdicts(self, analysis: Mapping[str, Any]) -> list[VerdictRow]:
        return [VerdictRow(entry["config_label"], "erank per calculator annotation "
                           "(length-adjusted)", scope_text(scope_of(entry, site=False)), claim)
                for entry in analysis.get("q4", []) for claim in entry["claims"]
                if claim["role"] == "primary" and not is_check(claim)]

    def summary(self, analysis: Mapping[str, Any]) -> list[str]:
        items = []
        for entry in analysis.get("q4", []):
            claim = next((c for c in entry["claims"] if c["role"] == "primary"), None)
            if claim:
                items.append(f"Q4, {head_scope(entry, site=False)}: "
                             f"{number(claim['estimate'], signed=True)} erank per calculator "
                             f"annotation, length-adjusted ({interval_words(claim)}): "
                             f"{verdict_text(claim['verdict'])}.")
        return items


DEPTH = Depth()


def depth_claims(group: GroupKey, erank: np.ndarray, covariates: pd.DataFrame,
                 ctx: AnalysisContext, *, measure: str, families: tuple[str, str],
                 question: str, notes: list[str],
                 ) -> tuple[list[Finding], dict[str, DepthResult], list[Claim]]:
    """Length-adjusted depth slopes of ``erank`` (n_seeds, n_items), per item covariates
    from ``item_covariates``: calculator annotations (primary, family ``families[0]``) and
    solution lines (secondary, ``families[1]``), each where depth is known for >= 3 items
    and takes >= 2 values. A fit that fails becomes a run note, a degenerate E1 model a note
    in ``notes``. Returns the run notes, the results by depth column and the claims."""
    n_tokens = covariates["n_tokens"].to_numpy()
    found: list[Finding] = []
    claims, results = [], {}
    for (column, role), family in zip(DEPTH_COLUMNS, families, strict=True):
        depth = covariates[column].to_numpy()
        known = depth[np.isfinite(depth)]
        if known.size < 3 or np.unique(known).size < 2:
            continue
        try:
            result = depth_association(erank, depth, n_tokens,
                                       rank_statistics=role == "primary", **ctx.options)
        except AblateError as error:
            found.append(RunNote(f"{group.as_dict()} {question} on {column}: {error}"))
            continue
        results[column] = result
        ols = result.adjusted_slope_ols
        assert ols is not None  # model_e1 defaults to True
        if ols.note:
            notes.append(f"{column} E1 model: {ols.note}")
        claims.append(interval_claim(
            result.adjusted_slope, claim=f"{measure} changes with {column}, adjusted for log "
            "n_tokens", family=group.family(family), unit=f"erank per unit of {column}",
            role=role, e1_model={"interval": ols.interval, "p": ols.p, "method": ols.method}))
    return found, results, claims


def depth_summary(primary: DepthResult, erank: np.ndarray, covariates: pd.DataFrame, *,
                  n_boot: int) -> dict[str, Any]:
    """The descriptive part of a depth entry: sizes, rank correlations, the agreement of
    the two depth measures and the erank-length correlation (the confounding check).
    ``n_boot`` replicates gave the partial Spearman p (a bootstrap p; Kendall's is scipy's)."""
    from scipy import stats

    return {"n_items": primary.n_items, "n_excluded_unknown_depth": primary.n_excluded,
            "length_adjusted": primary.length_adjusted,
            "kendall_tau_b": rank_dict(primary.kendall_tau_b),
            "partial_spearman": rank_dict(primary.partial_spearman, n_boot=n_boot),
            "depth_agreement": depth_agreement(covariates["depth_annotations"].to_numpy(),
                                               covariates["depth_lines"].to_numpy()),
            "erank_length_spearman": float(stats.spearmanr(
                erank.mean(axis=0), covariates["n_tokens"]).statistic)}


def rank_dict(association: RankAssociation | None, *, n_boot: int | None = None
              ) -> dict[str, Any] | None:
    """A rank correlation as JSON; ``n_boot`` is set when its p is a bootstrap p."""
    if association is None:
        return None
    return {"estimate": association.estimate, "interval": list(association.interval),
            "p": association.p, "method": association.method, "n_boot": n_boot}


def entry_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q4`` entry: adjusted slopes, rank correlations, depth agreement, length."""
    blocks: list[Block] = [Paragraph(
        f"Effective rank of M({entry.get('erank_iteration')}) on unablated rows over "
        f"{entry['n_items']} problems ({entry.get('n_excluded_unknown_depth', 0)} "
        "excluded for unknown depth); all problems are used, since conditioning on "
        "correctness would open a collider path.")]
    blocks += depth_claim_blocks(entry["claims"], level, subject="effective rank",
                                 length_adjusted=bool(entry.get("length_adjusted")))
    texts = association_texts(entry, level, length_figure="erank-vs-length")
    return blocks + [Paragraph(text) for text in texts if text] + note_blocks(entry)


def depth_claim_blocks(claims: Sequence[Mapping[str, Any]], level: float, *, subject: str,
                       length_adjusted: bool) -> list[Block]:
    """Depth slopes of ``subject``: annotation count (primary), solution lines (secondary)."""
    blocks: list[Block] = []
    for claim in claims:
        primary = claim["role"] == "primary"
        depth = "calculator annotation" if primary else "solution line"
        adjusted = "holding log n_tokens fixed" if length_adjusted else \
            "(length is constant here, so nothing is adjusted)"
        lead = (f"{'Primary' if primary else 'Secondary'}: {subject} changes by "
                f"{number(claim['estimate'], signed=True)} per {depth}, {adjusted}.")
        blocks += claim_blocks(claim, level=level, lead=lead)
    return blocks


def association_texts(summary: Mapping[str, Any], level: float, *,
                      length_figure: str | None = None) -> list[str]:
    """Rank correlations, depth agreement and the length check of a depth summary (a
    ``q4`` entry or a ``q5`` entry's ``depth``); empty strings where a part is missing.
    ``length_figure`` names the question's figure of erank against length."""
    texts = []
    for key, name in (("kendall_tau_b", "Kendall tau-b of depth with the seed-mean erank "
                                        "(unadjusted)"),
                      ("partial_spearman", "Partial Spearman correlation given log n_tokens")):
        found = summary.get(key)
        if found:
            statement, why = p_words(found.get("p"), n_boot=found.get("n_boot"))
            texts.append(f"{name}: {number(found['estimate'], signed=True)} ({pct(level)} "
                         f"interval {pair(found.get('interval'))}, {statement}; "
                         f"{found['method']}" + (f"; {why}" if why else "") + f"), {E1_WORDS}.")
    agreement = summary.get("depth_agreement")
    if agreement:
        texts.append(f"Annotation count and solution lines agree with Kendall tau-b "
                     f"{number(agreement.get('kendall_tau_b'))} and Spearman "
                     f"{number(agreement.get('spearman'))} over {agreement.get('n_items')} "
                     f"problems; {number(100 * agreement['share_equal'])}% have equal counts."
                     if agreement.get("share_equal") is not None else "")
    rho = summary.get("erank_length_spearman")
    if rho is not None:
        figure = f" (figure {figure_ref(length_figure)})" if length_figure else ""
        texts.append(f"Confounding check: the Spearman correlation of seed-mean effective "
                     f"rank with n_tokens is {number(rho, signed=True)}; the larger it is, the "
                     f"more an unadjusted depth association would reflect length{figure}.")
    return texts


def depth_panel(records: pd.DataFrame, entry: Mapping[str, Any]) -> DepthPanel:
    """A ``q4`` entry with the seed-mean erank of M(T), depth and n_tokens per item."""
    return erank_depth_panel(records, entry, ERANK, lambda values: values[:, :, -1])


def erank_depth_panel(records: pd.DataFrame, entry: Mapping[str, Any], column: str,
                 per_item: Callable[[np.ndarray], np.ndarray],
                 measure: str | None = None) -> DepthPanel:
    """``per_item`` maps erank (n_seeds, n_items, n_steps) to (n_seeds, n_items)."""
    rows = group_rows(records, entry, intervention="none")
    erank = pivot_erank(rows, column=column)
    covariates = item_covariates(rows, erank.item_ids)
    return DepthPanel(entry=entry, erank=per_item(erank.values).mean(axis=0),
                      depth=covariates["depth_annotations"].to_numpy(dtype=float),
                      n_tokens=covariates["n_tokens"].to_numpy(dtype=float), measure=measure)
