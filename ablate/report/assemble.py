"""The report's outline: status notes, a summary, what was run, how to read the numbers,
one section per question with its prose, tables and figures, what would change a
conclusion, and the appendices.

    >>> blocks = build_blocks(run, figures, missing, validation=None, files=[])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from ablate.report.codi_prose import (
    LATENTS_INTRO,
    NO_LATENT_BASELINE,
    NO_LATENTS,
    q5_blocks,
    q5_latents_blocks,
)
from ablate.report.document import Block, Bullets, FigureBlock, Heading, Note, Paragraph, Table
from ablate.report.figures import MissingFigure, has_latents
from ablate.report.prose import (
    E1_WORDS,
    E3_WORDS,
    heads_blocks,
    outcome_words,
    q1_blocks,
    q2_blocks,
    q3_blocks,
    q4_blocks,
    summary_items,
)
from ablate.report.provenance import (
    RECOMMENDED_SEEDS,
    partial_banner,
    provenance_blocks,
    status_notes,
)
from ablate.report.run import RunAnalysis
from ablate.report.views import TableView, head_scope, number, table_views

VALIDATION_SHOWN = ("study", "n_seeds", "n_items", "sd_seed", "sd_problem_effect",
                    "sd_seed_slope", "sd_seed_effect", "n_eval_seeds", "sd_eval", "method",
                    "coverage_own_truth", "coverage_e3_truth", "fpr_e3_null")


def _figures(number_: int, figures: Mapping[int, Sequence[FigureBlock]],
             missing: Sequence[MissingFigure]) -> list[Block]:
    blocks: list[Block] = list(figures.get(number_, []))
    blocks += [Note(f"Figure {m.number} ({m.title[0].lower()}{m.title[1:]}) is not drawn: "
                    f"{m.reason}.")
               for m in missing if m.number == number_]
    return blocks


def _views(analysis: Mapping[str, Any]) -> dict[str, TableView]:
    return {view.key: view for view in table_views(analysis)}


def _reading_guide(run: RunAnalysis) -> list[Block]:
    level = f"{run.settings.level:.0%}"
    alpha = run.analysis.get("settings", {}).get("alpha", 0.05)
    return [Heading(2, "How to read the numbers"), Bullets((
        f"**E1** intervals and p-values answer a question {E1_WORDS}: would the result "
        "hold on new problems for exactly these trained checkpoints?",
        f"**E3** intervals and p-values answer the headline question {E3_WORDS}: would a "
        "new training run show it? E3 adds the seed-to-seed spread (two-way variance, "
        "Satterthwaite degrees of freedom) and needs at least two seeds.",
        f"All intervals are {level} and not adjusted for multiplicity; p-values are "
        "two-sided unless called one-sided. Verdicts use p-values Holm-adjusted within each "
        f"pre-registered family (alpha = {alpha}), so an interval can exclude zero while the "
        "verdict is 'not significant'.",
        "Verdicts: 'significant across seeds' needs the Holm-adjusted E3 p below alpha; "
        "'for these checkpoints only' means E1 but not E3; 'not significant' means neither, "
        "which does not show the absence of an effect.",
        "'Monotone' is claimed only when every adjacent contrast k vs 2k rejects one-sided "
        "(intersection-union test). 'No different from random' is claimed only when a TOST "
        "equivalence test rejects at the configured margin; otherwise the text says "
        "'not shown to differ'.",
    ))]


def _question(title: str, intro: str, entries: Sequence[Mapping[str, Any]],
              heading: Callable[[Mapping[str, Any]], str],
              body: Callable[[Mapping[str, Any], float], list[Block]],
              level: float) -> list[Block]:
    blocks: list[Block] = [Heading(2, title), Paragraph(intro)]
    for entry in entries:
        blocks += [Heading(3, heading(entry)), *body(entry, level)]
    return blocks


def report_title(run: RunAnalysis) -> str:
    """The report's title; an incomplete run says so in it ("(partial: 5 of 12 jobs)")."""
    partial = f" ({run.partial_text})" if run.partial_text else ""
    return f"Rank-ablation report: {run.name}{partial}"


def build_blocks(run: RunAnalysis, figures: Mapping[int, Sequence[FigureBlock]],
                 missing: Sequence[MissingFigure], *, validation: pd.DataFrame | None,
                 validation_source: str, files: Sequence[str]) -> list[Block]:
    analysis, level = run.analysis, run.settings.level
    views = _views(analysis)
    blocks: list[Block] = [
        Heading(1, report_title(run)),
        *partial_banner(run),
        Paragraph(f"Written by `ablate report` from the run directory `{run.run_dir}`. Every "
                  "number below comes from the analysis in `analysis.json` (also in "
                  "`tables/*.csv`); the figures are in `figures/` as PNG and SVG."),
        *status_notes(run),
        Heading(2, "Summary"),
    ]
    items = summary_items(analysis)
    blocks.append(Bullets(tuple(items)) if items else Paragraph(
        "No claim could be tested on these records (see the notes above)."))
    blocks += provenance_blocks(run) + _reading_guide(run)

    q1 = analysis.get("q1", [])
    blocks += _question(
        "Q1: does accuracy fall as projection rank falls?",
        "Estimand: the change in the outcome per halving of k, from per-seed least-squares "
        "slopes on log2 k (E1: problem-clustered OLS with seed fixed effects; E3: two-way "
        "interval on the per-seed slopes). Unablated vs the largest k is a separate contrast "
        "in the same Holm family.",
        q1, lambda e: f"{head_scope(e)}: {outcome_words(e['outcome'])}", q1_blocks, level)
    if not q1:
        blocks.append(Paragraph("Not tested: the run has fewer than two svd_rank_k ranks."))
    blocks += _figures(1, figures, missing) + _figures(3, figures, missing)
    blocks += [Table(views[key]) for key in ("q1", "q1_adjacent") if key in views]

    q2 = analysis.get("q2", [])
    blocks += _question(
        "Q2: is the top-k SVD subspace special?",
        "Estimand per k: the outcome under the SVD rank-k projection minus its mean over "
        "random rank-k projections (Haar-random bases), paired per problem, with draws "
        "resampled in the bootstrap; Holm across the k of one outcome. Answer log-likelihood "
        "and bits per byte (a ratio of sums, documents resampled) are secondary outcomes.",
        q2, lambda e: f"{head_scope(e)}: {outcome_words(e['outcome'])}", q2_blocks, level)
    if not q2:
        blocks.append(Paragraph("Not tested: no random_rank_k draws share a k with "
                                "svd_rank_k."))
    blocks += _figures(2, figures, missing) + _figures(4, figures, missing)
    blocks += [Table(views["q2"])] if "q2" in views else []

    blocks += _question(
        "Q3: does effective rank rise over iterations, and does the head set the direction?",
        "Effective rank (Roy and Vetterli) of each state M(t), averaged over positions, on "
        "unablated rows. Per seed: the least-squares slope over iterations 1..T (primary) "
        "and iteration T minus iteration 1 (secondary); seeds are combined with the two-way "
        "interval. A single seed's trajectory is a description, not an inference.",
        analysis.get("q3", []), lambda e: head_scope(e, site=False), q3_blocks, level)
    for entry in analysis.get("q3_heads", []):
        blocks.append(Heading(3, f"Head comparison: {entry['head_a']} vs {entry['head_b']}"))
        blocks += heads_blocks(entry, level)
    if not analysis.get("q3"):
        blocks.append(Paragraph("Not tested: no unablated rows with erank_per_iter over at "
                                "least two thinking iterations."))
    blocks += _figures(5, figures, missing) + _figures(6, figures, missing)
    blocks += [Table(views[key]) for key in ("q3", "q3_heads") if key in views]

    blocks += _question(
        "Q4: does effective rank follow reasoning depth?",
        "Depth is the number of calculator annotations <<...=...>> in the solution (primary) "
        "or of solution lines before #### (secondary). Length confounds effective rank, so "
        "the estimand is the depth coefficient of erank ~ depth + log(n_tokens), per seed.",
        analysis.get("q4", []), lambda e: head_scope(e, site=False), q4_blocks, level)
    if not analysis.get("q4"):
        blocks.append(Paragraph("Not tested: no item has a known depth together with "
                                "effective rank on unablated rows."))
    blocks += _figures(7, figures, missing) + _figures(8, figures, missing)
    blocks += [Table(views["q4"])] if "q4" in views else []
    if has_latents(run):
        blocks += _latents(analysis, level, views, figures, missing)

    if "scans" in views:
        blocks += [Heading(2, "Exploratory: scan over sites"),
                   Paragraph("Exploratory, not a pre-registered claim: the Q1 slope's E3 p "
                             "at every site of a group, Benjamini-Hochberg adjusted."),
                   Table(views["scans"])]
    blocks += _power(run, views, figures, missing)
    blocks += _validation(validation, validation_source, figures, missing)
    blocks += [Heading(2, "Files"), Bullets(tuple(f"`{name}`" for name in files))]
    return blocks


def _latents(analysis: Mapping[str, Any], level: float, views: Mapping[str, TableView],
             figures: Mapping[int, Sequence[FigureBlock]],
             missing: Sequence[MissingFigure]) -> list[Block]:
    """Q5: the latent thoughts of matrix-CODI (profile, depth, number of latents)."""
    q5, counts = analysis.get("q5", []), analysis.get("q5_latents", [])
    blocks = _question("Q5: matrix-CODI latent thoughts", LATENTS_INTRO, q5,
                       lambda e: f"{head_scope(e, site=False)}: {e['n_latents']} latent "
                                 "thoughts", q5_blocks, level)
    if not q5:
        blocks.append(Paragraph(NO_LATENTS))
    for entry in counts:
        blocks += [Heading(3, f"Number of latents, {head_scope(entry, site=False)}: "
                              f"{outcome_words(entry['outcome'])}"),
                   *q5_latents_blocks(entry, level)]
    if q5 and not counts:
        blocks.append(Paragraph(NO_LATENT_BASELINE))
    blocks += _figures(11, figures, missing) + _figures(12, figures, missing)
    return blocks + [Table(views[key]) for key in ("q5", "q5_latents") if key in views]


def _power(run: RunAnalysis, views: Mapping[str, TableView],
           figures: Mapping[int, Sequence[FigureBlock]],
           missing: Sequence[MissingFigure]) -> list[Block]:
    power = run.analysis.get("power", {})
    mde = {int(row["n_seeds"]): row["mde_in_seed_sd"] for row in power.get("mde_table", [])}
    used = sorted({int(c["n_seeds"]) for c in power.get("variance_components", [])})
    blocks: list[Block] = [Heading(2, "What would change a conclusion"), Paragraph(
        "An across-seed (E3) claim is, at its core, a t test on the per-seed estimates, so "
        "its power depends on the number of seeds and on how much the effect varies between "
        "seeds. The minimum detectable effect (MDE) is the smallest true effect found with "
        "80% power at two-sided alpha 0.05, in units of the seed-to-seed SD of the effect; "
        "the table of variance components turns it into the outcome's units for this run.")]
    sentences = [f"with {n} seed{'s' if n != 1 else ''} the MDE is {number(mde[n])} seed SDs"
                 for n in used if n in mde]
    if sentences:
        target = f"; at {RECOMMENDED_SEEDS} seeds it is {number(mde[RECOMMENDED_SEEDS])}" \
            if RECOMMENDED_SEEDS in mde else ""
        blocks.append(Paragraph(f"In this run, {', '.join(sentences)}{target}. An across-seed "
                                "effect below the MDE in the table would probably be missed, "
                                "so a 'not significant' verdict there is weak evidence."))
    if any(n < 2 for n in used):
        blocks.append(Paragraph("With one seed there is no seed-to-seed spread to estimate: "
                                "no MDE applies and no across-seed claim can be made."))
    fragile = [c["claim"] + f" ({head_scope(e, site=bool(e.get('site')))})"
               for family in ("q1", "q2", "q3", "q4", "q5", "q5_latents")
               for e in run.analysis.get(family, [])
               for c in e["claims"] if c.get("verdict") == "these_checkpoints_only"]
    if fragile:
        blocks += [Paragraph("These claims hold for these checkpoints (E1) but were not shown "
                             "across seeds (E3); more seeds could confirm or overturn them:"),
                   Bullets(tuple(fragile))]
    recommendation = power.get("recommendation")
    blocks.append(Paragraph(f"Recommendation: {recommendation or ''}. This run has "
                            f"{', '.join(map(str, used)) or 'no'} seed(s) per group; "
                            f"{RECOMMENDED_SEEDS} or more are recommended."))
    blocks += _figures(9, figures, missing)
    return blocks + [Table(views[key]) for key in ("variance_components", "power_mde")
                     if key in views]


def _validation(table: pd.DataFrame | None, source: str,
                figures: Mapping[int, Sequence[FigureBlock]],
                missing: Sequence[MissingFigure]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Appendix: validation of the methods")]
    if table is None:
        return blocks + [Paragraph(
            "No validation table was found. Produce it with `python bench/stats_validation.py` "
            "(full grid: 1000 replicates per cell; it writes "
            "`bench/results/stats_validation.csv`), then run `ablate report RUN_DIR "
            "--validation bench/results/stats_validation.csv`.")]
    shown = [c for c in VALIDATION_SHOWN if c in table.columns]
    rows = tuple(tuple("" if pd.isna(v) else (number(v) if isinstance(v, float) else str(v))
                       for v in record) for record in table[shown].itertuples(index=False))
    blocks += [Paragraph(f"From `{source}`: simulated seeds x problems designs with known "
                         "truth. Coverage should be near 0.95 and the false-positive rate "
                         "near 0.05 for a method to be trusted for that claim; the E3 "
                         "interval is the one built for the headline claim.")]
    blocks += _figures(10, figures, missing)
    blocks.append(Table(TableView("validation", "Coverage and false-positive rate by method",
                                  tuple(shown), rows)))
    return blocks
