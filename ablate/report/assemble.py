"""The report's outline: status notes, a summary, what was run, how to read the numbers,
one section per registered research question (its prose, then its figures, then its
tables, in registry order), and the appendices.

    >>> blocks = build_blocks(run, figures, validation=None, files=[])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pandas as pd

from ablate.questions import QUESTIONS, Evidence
from ablate.questions.blocks import (
    Block,
    Bullets,
    Heading,
    Note,
    Paragraph,
    Table,
    TableView,
)
from ablate.questions.words import E1_WORDS, E3_WORDS, FIGURE_REF, number
from ablate.report.figures import VALIDATION
from ablate.report.provenance import partial_banner, provenance_blocks, status_notes
from ablate.report.run import RunAnalysis

VALIDATION_SHOWN = ("study", "n_seeds", "n_items", "sd_seed", "sd_problem_effect",
                    "sd_seed_slope", "sd_seed_effect", "n_eval_seeds", "sd_eval", "method",
                    "coverage_own_truth", "coverage_e3_truth", "fpr_e3_null")


def evidence_of(run: RunAnalysis) -> Evidence:
    """What the questions' presentation reads from an analysed run."""
    return Evidence(analysis=run.analysis, records=run.records, level=run.settings.level,
                    n_boot=run.settings.n_boot, seed=run.settings.seed,
                    questions=tuple(QUESTIONS))


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


def report_title(run: RunAnalysis) -> str:
    """The report's title; an incomplete run says so in it ("(partial: 5 of 12 jobs)")."""
    partial = f" ({run.partial_text})" if run.partial_text else ""
    return f"Rank-ablation report: {run.name}{partial}"


def build_blocks(run: RunAnalysis, figures: Mapping[str, Sequence[Block]],
                 numbers: Mapping[str, Mapping[str, int]], *, validation: pd.DataFrame | None,
                 validation_source: str, files: Sequence[str]) -> list[Block]:
    """The report's blocks; ``figures`` holds each question's figure blocks (and notes of
    figures not drawn), ``numbers`` its figure numbers by name (for references in prose)."""
    evidence = evidence_of(run)
    analysis = run.analysis
    blocks: list[Block] = [
        Heading(1, report_title(run)),
        *partial_banner(run),
        Paragraph(f"Written by `ablate report` from the run directory `{run.run_dir}`. Every "
                  "number below comes from the analysis in `analysis.json` (also in "
                  "`tables/*.csv`); the figures are in `figures/` as PNG and SVG."),
        *status_notes(run),
        Heading(2, "Summary"),
    ]
    items = [item for question in evidence.questions for item in question.summary(analysis)]
    blocks.append(Bullets(tuple(items)) if items else Paragraph(
        "No claim could be tested on these records (see the notes above)."))
    blocks += provenance_blocks(run) + _reading_guide(run)
    for question in evidence.questions:
        if not question.applies(evidence):
            continue
        section = _resolve(question.section(evidence), numbers.get(question.key, {}))
        blocks += section + list(figures.get(question.key, []))
        blocks += [Table(view) for view in question.views(analysis) if view.rows]
    blocks += _validation(validation, validation_source, figures.get(VALIDATION, []))
    blocks += [Heading(2, "Files"), Bullets(tuple(f"`{name}`" for name in files))]
    return blocks


def _resolve(blocks: list[Block], numbers: Mapping[str, int]) -> list[Block]:
    """Replace figure references in a section's text by the figures' numbers."""
    def text(value: str) -> str:
        return FIGURE_REF.sub(lambda match: str(numbers[match.group(1)]), value)

    resolved: list[Block] = []
    for block in blocks:
        if isinstance(block, (Paragraph, Note)):
            block = replace(block, text=text(block.text))
        elif isinstance(block, Bullets):
            block = Bullets(tuple(text(item) for item in block.items))
        resolved.append(block)
    return resolved


def _validation(table: pd.DataFrame | None, source: str,
                figures: Sequence[Block]) -> list[Block]:
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
    blocks += list(figures)
    blocks.append(Table(TableView("validation", "Coverage and false-positive rate by method",
                                  tuple(shown), rows)))
    return blocks
