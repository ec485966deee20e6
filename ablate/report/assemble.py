"""The report's outline. The first screen answers the questions: warnings that change how
everything reads (an incomplete or smoke run, a failed identity check), then the verdict
table (one row per head and headline claim: estimate, E3 interval, verdict; each linked to
its section) beside the headline figure. Below: the status notes, the contents, a summary
in words, what was run, how to read the numbers, one section per registered research
question (its prose, then its figures, then its tables, in registry order), and the
appendices.

    >>> blocks = build_blocks(run, figures, validation=None, files=[])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd

from ablate.questions import QUESTIONS, Evidence, Question, table_views
from ablate.questions.base import VerdictRow
from ablate.questions.blocks import (
    Block,
    Bullets,
    Columns,
    Contents,
    FigureBlock,
    Heading,
    Note,
    Paragraph,
    Table,
    TableView,
)
from ablate.questions.words import (
    E1_WORDS,
    E3_WORDS,
    FIGURE_REF,
    footnoted,
    is_check,
    number,
    pair,
    short_verdict,
)
from ablate.report.document import anchor
from ablate.report.figures import VALIDATION
from ablate.report.provenance import (
    is_codi,
    partial_banner,
    provenance_blocks,
    smoke_banner,
    status_notes,
)
from ablate.report.run import RunAnalysis
from ablate.tasks.outcomes import primary_name

VALIDATION_SHOWN = ("study", "n_seeds", "n_items", "sd_seed", "sd_problem_effect",
                    "sd_seed_slope", "sd_seed_effect", "n_eval_seeds", "sd_eval", "method",
                    "coverage_own_truth", "coverage_e3_truth", "fpr_e3_null")


def evidence_of(run: RunAnalysis) -> Evidence:
    """What the questions' presentation reads from an analysed run."""
    return Evidence(analysis=run.analysis, records=run.records, level=run.settings.level,
                    n_boot=run.settings.n_boot, seed=run.settings.seed,
                    questions=tuple(QUESTIONS))


def accuracy_name(run: RunAnalysis) -> str:
    """The primary outcome behind "accuracy" in this run, for the verdict legend: one
    name, or the names per task."""
    config = run.manifest.get("config") or {}
    codi = is_codi(config)
    study = config.get("codi_study") or (config if "checkpoint" in config else None)
    tasks = [study.get("task", {})] if study else list(config.get("tasks") or [])
    names = list(dict.fromkeys(primary_name(t, codi=codi) for t in tasks))
    if len(names) <= 1:
        return names[0] if names else ""
    return "; ".join(f"{t.get('name')} {t.get('mode')}: {primary_name(t, codi=codi)}"
                     for t in tasks)


def _reading_guide(run: RunAnalysis) -> list[Block]:
    level = f"{run.settings.level:.0%}"
    alpha = run.analysis.get("settings", {}).get("alpha", 0.05)
    return [Heading(2, "How to read the numbers"), Bullets((
        "**Accuracy** is the share of problems whose outcome `correct` is 1: each task's "
        "primary outcome, named under \"What was run\". Teacher-forced: the argmax "
        "reproduces every gold answer token (nothing is generated). Generative GSM8K-format "
        "tasks: lm-evaluation-harness's strict-match exact match unless the task's "
        "`outcome` option names flexible-extract or numeric match (within 1e-4); the "
        "records keep all three (`correct_strict`, `correct_flexible`, `correct_numeric`) "
        "and the unablated accuracy under each is tabled under \"What was run\". OpenR1: "
        "math equality of the last \\boxed{}. CODI: the first number after its answer cue "
        "within 1e-4.",
        f"**E1** intervals and p-values answer a question {E1_WORDS}: would the result "
        "hold on new problems for exactly these trained checkpoints?",
        f"**E3** intervals and p-values answer the headline question {E3_WORDS}: would a "
        "new training run show it? E3 adds the seed-to-seed spread (two-way variance, "
        "Satterthwaite degrees of freedom) and needs at least two seeds.",
        f"All intervals are {level} and not adjusted for multiplicity; p-values are "
        "two-sided unless called one-sided. Verdicts use p-values Holm-adjusted within each "
        f"pre-registered family (alpha = {alpha}), so an interval can exclude zero while the "
        "verdict is 'not significant'.",
        f"A bootstrap p-value (E1 'paired problem bootstrap') counts replicates: from B = "
        f"{run.settings.n_boot} it cannot go below 2/B, so where no replicate crossed zero "
        "it is written as a bound ('p < 0.001'), and a bootstrap p below 0.01 from fewer than "
        "10,000 replicates is flagged as imprecise. E3 p-values come from a t reference and "
        "are not counts; any p-value below 0.001 is written 'p < 0.001' (analysis.json has "
        "the values).",
        "Checks are not tests: a contrast whose two conditions are the same function (a rank "
        "cut with k >= d keeps the states) is an identity check, passed when the difference "
        "is zero up to rounding in every seed and replicate; a contrast with no difference in "
        "any item has nothing to test. Neither gets a p-value or enters a Holm family.",
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
    figures not drawn), ``numbers`` its figure numbers by name (for references in prose).
    The first question's headline figure moves to the first screen, beside the verdicts."""
    evidence = evidence_of(run)
    analysis = run.analysis
    figures, headline = _take_headline(evidence, figures)
    blocks: list[Block] = [
        Heading(1, report_title(run)),
        *partial_banner(run),
        *smoke_banner(run),
        *identity_failures(evidence),
        Columns("lead", (tuple(verdict_blocks(evidence, accuracy=accuracy_name(run))),
                         (headline,) if headline is not None else ())),
        Paragraph(f"Written by `ablate report` from the run directory `{run.run_dir}`. Every "
                  "number below comes from the analysis in `analysis.json` (also in "
                  "`tables/*.csv`); the figures are in `figures/` as PNG and SVG."),
        *status_notes(run),
        Contents(),
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
        blocks += [Table(view) for view in table_views(analysis, [question])]
    blocks += _validation(validation, validation_source, figures.get(VALIDATION, []))
    blocks += [Heading(2, "Files"), Bullets(tuple(f"`{name}`" for name in files))]
    return blocks


def _take_headline(evidence: Evidence, figures: Mapping[str, Sequence[Block]]
                   ) -> tuple[dict[str, list[Block]], FigureBlock | None]:
    """The figures without the headline figure (the first drawn headline figure of the
    first question that has one; a line in its section says where it went), and that
    figure."""
    remaining = {key: list(blocks) for key, blocks in figures.items()}
    for question in evidence.questions:
        name = question.headline_figure
        found = remaining.get(question.key, [])
        for index, block in enumerate(found):
            if name and isinstance(block, FigureBlock) and block.name == name:
                found[index] = Paragraph(f"{block.label} is shown at the top of the report, "
                                         "beside the verdicts.")
                return remaining, block
    return remaining, None


def _label(question: Question) -> str:
    """"Q1" from "Q1: does ...", else the question's key."""
    title = question.title or question.key
    return title.split(":", 1)[0] if ":" in title else question.key


def verdict_rows(evidence: Evidence) -> list[tuple[Question, VerdictRow]]:
    return [(question, row) for question in evidence.questions
            if question.applies(evidence) for row in question.verdicts(evidence.analysis)]


def verdict_view(evidence: Evidence) -> TableView:
    """One row per head and headline claim of each question: the estimate, its E3 interval
    and the verdict; the question cell links to the question's section. The task, mode
    and T (and the ablations' site) are named once in the title when the run has one."""
    found = verdict_rows(evidence)
    scopes = list(dict.fromkeys(row.scope for _, row in found))
    sites = list(dict.fromkeys(row.site for _, row in found if row.site))
    rows = []
    for question, row in found:
        claim = row.claim
        where = f" ({row.scope})" if len(scopes) > 1 else ""
        where += f" at {row.site}" if len(sites) > 1 and row.site else ""
        e3 = pair(claim.get("e3")) if claim.get("e3") and None not in claim["e3"] else "n/a"
        rows.append((f"[{_label(question)}](#{anchor(question.title or question.key)}) "
                     f"{row.what}{where}", row.head, number(claim.get("estimate"), signed=True),
                     e3, short_verdict(claim.get("verdict"))))
    level = f"{evidence.level:.0%}"
    shared = [scopes[0]] if len(scopes) == 1 else []
    shared += [f"rank cuts at {sites[0]}"] if len(sites) == 1 else []
    title = "Verdicts" + (f" ({'; '.join(shared)})" if shared else "")
    return TableView("verdicts", title, ("question", "head", "estimate", f"E3 {level}",
                                         "verdict"), tuple(rows))


def checks(evidence: Evidence) -> list[tuple[Question, Mapping[str, Any]]]:
    """Every claim that is a check, with its question."""
    return [(question, claim) for question in evidence.questions
            for key in question.claim_outputs for entry in evidence.analysis.get(key, [])
            for claim in entry.get("claims", []) if is_check(claim)]


def identity_failures(evidence: Evidence) -> list[Block]:
    """A warning at the top when an identity check failed: the rank cut is not the
    identity where it must be, so every other result is suspect."""
    failed = [(question, claim) for question, claim in checks(evidence)
              if claim.get("verdict") == "identity_check_failed"]
    if not failed:
        return []
    listed = "; ".join(f"{_label(question)} {claim['claim']} ({claim.get('identity')}: "
                       f"estimate {number(claim.get('estimate'), signed=True)} "
                       f"{claim.get('unit', '')})" for question, claim in failed)
    return [Note(f"**{len(failed)} identity check(s) failed**: a rank cut with k >= d must "
                 f"keep the states, but these contrasts are not zero: {listed}. Check the "
                 "run before reading any result below.", "warning")]


def checks_text(evidence: Evidence) -> str:
    """One line on the checks: how many identity checks passed and failed, and how many
    contrasts were zero up to rounding; "" when there are none."""
    found = checks(evidence)
    if not found:
        return ""
    identity = [(q, c) for q, c in found if c.get("verdict", "").startswith("identity")]
    passed = sum(c["verdict"] == "identity_check_passed" for _, c in identity)
    parts = []
    if identity:
        reasons = sorted({str(c.get("identity")) for _, c in identity})
        labels = sorted({_label(q) for q, _ in identity})
        parts.append(f"Identity checks: {passed} of {len(identity)} passed ({', '.join(labels)} "
                     f"contrasts where {' and '.join(reasons)} keeps the states, so they must "
                     "be zero up to rounding)")
    zero = len(found) - len(identity)
    if zero:
        parts.append(f"{zero} contrast(s) showed no difference in any item (zero up to "
                     "rounding)")
    return "; ".join(parts) + ". Checks are not tests: they are not in this table or in any " \
        "Holm family."


def verdict_blocks(evidence: Evidence, *, accuracy: str = "") -> list[Block]:
    """The verdict table with its legend (naming ``accuracy``, the primary outcome, when
    given) and the line on the checks."""
    view = verdict_view(evidence)
    if not view.rows:
        return [Paragraph("**Verdicts**: no claim could be tested on these records (see the "
                          "notes below).")]
    alpha = evidence.analysis.get("settings", {}).get("alpha", 0.05)
    legend = (f"Estimate: mean over seeds. E3: the {evidence.level:.0%} interval for a new "
              "training run on problems like these. Verdicts use Holm-adjusted p-values "
              f"(alpha {alpha}); 'these checkpoints only' means E1 but not E3. Each question "
              "links to its section below."
              + (f" Accuracy: {accuracy}." if accuracy else ""))
    blocks: list[Block] = [Table(footnoted(view)), Paragraph(legend)]
    text = checks_text(evidence)
    return blocks + ([Paragraph(text)] if text else [])


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
