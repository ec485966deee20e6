"""Run every registered question on one run's per-item records and return a JSON dict.

The walk: per group (config_label, task, mode, n_iterations) and site of its registered
interventions, each outcome there (``ablate.questions.arms``) goes to every question's
``at_site``; then the group to every ``at_group``; then the run to every ``at_run``. Holm
runs once over the claims of every question, within each claim's family. With one seed
everything is described and E1 ("these checkpoints") is tested, but nothing is inferred
across seeds. The schema is in docs/statistics.md; every float is rounded to 10 significant
digits, NaN/inf become null.

    >>> analysis = analyze_records(records, rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> analysis["q1"][0]["claims"][0]["e3"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ablate.errors import AblateError
from ablate.questions.arms import analysed, site_outcomes
from ablate.questions.base import (
    AnalysisContext,
    Finding,
    GroupRows,
    Question,
    RunNote,
    VarianceComponent,
)
from ablate.questions.registry import QUESTIONS
from ablate.stats.claims import GroupKey, apply_holm, json_ready

logger = logging.getLogger(__name__)

SCHEMA = "ablate.stats/1"
REQUIRED_COLUMNS = ("config_label", "task", "mode", "n_iterations", "intervention", "site",
                    "k", "draw", "train_seed", "item_id")
GROUP_COLUMNS = ["config_label", "task", "mode", "n_iterations"]


def analyze_records(records: pd.DataFrame, *, rng: np.random.Generator, level: float = 0.95,
                    n_boot: int = 2000, tost_margin: float | None = None,
                    alpha: float = 0.05, questions: Sequence[Question] | None = None,
                    dims: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Every applicable question on a run's per-item records (schema in
    docs/statistics.md); returns the JSON-serialisable analysis (docs/statistics.md).
    ``questions`` defaults to the registry. ``dims`` (head -> matrix size d, from the run
    manifest) makes contrasts of rank cuts with k >= d identity checks; without it only
    contrasts that are zero up to rounding are checks."""
    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise AblateError(f"records lack column(s) {', '.join(missing)}; they must follow the "
                          "per-item record schema written by ablate.store")
    if records.empty:
        raise AblateError("records are empty: run the experiment before analysing it")
    questions = tuple(QUESTIONS if questions is None else questions)
    ctx = AnalysisContext(rng=rng, level=level, n_boot=n_boot, alpha=alpha,
                          tost_margin=tost_margin, dims=dict(dims or {}))
    ctx.found.update({output: [] for question in questions for output in question.outputs})
    notes: list[str] = []
    left_out = sorted(str(v) for v in pd.unique(records["intervention"])
                      if str(v) != "none" and not analysed(str(v)))
    if left_out:
        notes.append(f"rows of {', '.join(left_out)} are not analysed: no registered kind "
                     "gives them a role (composed conditions, or kinds this process has not "
                     "registered; see ablate.interventions.register_intervention)")
    contexts = {question.key: ctx if question.shared_stream
                else replace(ctx, rng=own_stream(rng, question.key)) for question in questions}

    def take(findings: list[Finding]) -> None:
        for finding in findings:
            if isinstance(finding, RunNote):
                notes.append(finding.text)
            elif isinstance(finding, VarianceComponent):
                ctx.variance.append(finding)
            else:
                ctx.found[finding.output].append(finding)

    for group, rows in _groups(records):
        unablated = rows[rows["intervention"] == "none"]
        kept = [value for value in pd.unique(rows["intervention"]) if analysed(str(value))]
        ablated = rows[rows["intervention"].isin(kept)]
        sites = sorted(set(ablated["site"].astype(str)))
        for site in sites:
            site_rows = ablated[ablated["site"].astype(str) == site]
            for found in site_outcomes(group, site, site_rows, unablated):
                if isinstance(found, RunNote):
                    take([found])
                    continue
                for question in questions:
                    take(question.at_site(found, contexts[question.key]))
        group_rows = GroupRows(group, rows, unablated, tuple(sites))
        for question in questions:
            take(question.at_group(group_rows, contexts[question.key]))
        logger.info("analysed %s: %d site(s)", group, len(sites))
    for question in questions:
        take(question.at_run(records, contexts[question.key]))
    claim_outputs = [output for question in questions for output in question.claim_outputs]
    # Checks (identities, contrasts zero up to rounding) leave their families here.
    apply_holm([claim for output in claim_outputs for entry in ctx.found[output]
                for claim in entry.entry_claims], alpha=alpha)
    analysis: dict[str, Any] = {
        "schema": SCHEMA,
        "settings": {"level": level, "n_boot": n_boot, "alpha": alpha,
                     "tost_margin": tost_margin, "dims": dict(sorted(ctx.dims.items()))},
        "notes": notes}
    for question in questions:
        analysis.update(question.to_json(ctx.found, ctx))
    if not any(ctx.found[output] for output in claim_outputs):
        needs = [question.needs for question in questions
                 if question.claim_outputs and question.needs]
        notes.append("no family applied: records have no " + (
            f"{', '.join(needs[:-1])} or {needs[-1]}" if len(needs) > 1 else "".join(needs)))
    return json_ready(analysis)


def own_stream(rng: np.random.Generator, key: str) -> np.random.Generator:
    """A generator for the question ``key``, independent of the run's generator and of
    every other question's, and the same for the same seed and key."""
    seed = getattr(rng.bit_generator, "seed_seq", None)
    if not isinstance(seed, np.random.SeedSequence):  # reading the state draws nothing
        seed = np.random.SeedSequence(zlib.crc32(repr(rng.bit_generator.state).encode()))
    return np.random.default_rng(np.random.SeedSequence(
        seed.entropy, spawn_key=(*seed.spawn_key, zlib.crc32(key.encode()))))


def _groups(records: pd.DataFrame) -> list[tuple[GroupKey, pd.DataFrame]]:
    bases = records[GROUP_COLUMNS].drop_duplicates().sort_values(GROUP_COLUMNS)
    groups = []
    for base in bases.itertuples(index=False):
        group = GroupKey(str(base.config_label), str(base.task), str(base.mode),
                         int(base.n_iterations))
        rows = records[(records["config_label"] == group.config_label)
                       & (records["task"] == group.task) & (records["mode"] == group.mode)
                       & (records["n_iterations"] == group.n_iterations)]
        groups.append((group, rows))
    return groups
