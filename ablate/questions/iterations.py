"""Q3: does effective rank rise over iterations, and does the head set the direction? On
unablated rows, per head: the slope of effective rank over iterations 1..T (primary) and
iteration T minus 1 (secondary); then every pair of heads that share task, mode and T:
the slope difference (paired on the same checkpoints, else per checkpoint) and the
direction-flip test.

    >>> ITERATIONS.at_group(group, ctx)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ablate.plots import ErankPanel, plot_erank_trajectories, plot_slopes_by_head
from ablate.questions.base import (
    HIDDEN,
    ONE_SEED_NOTE,
    AnalysisContext,
    Entry,
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
from ablate.questions.figures import by_scope, group_rows, intervals_caption, scope_of, scope_text
from ablate.questions.words import (
    CLAIM_COLUMNS,
    E3_WORDS,
    change_text,
    claim_blocks,
    claim_cells,
    head_scope,
    interval_words,
    is_check,
    note_blocks,
    number,
    p_value,
    verdict_text,
)
from ablate.stats import mean_interval
from ablate.stats.claims import Claim, interval_claim
from ablate.stats.frames import check_aligned, pivot_erank
from ablate.stats.intervals import TwoWayResult
from ablate.stats.iterations import (
    compare_heads_paired,
    compare_heads_unpaired,
    direction_flip,
    erank_trend,
    iteration_weights,
)

ERANK = "erank_per_iter"
START = 1  # first iteration in slopes: M(0) is the embedding, not a thinking iteration


@dataclass
class IterationEntry(GroupEntry):
    output: ClassVar[str] = "q3"
    n_seeds: int
    seeds: list[int]
    n_items: int
    iterations: list[int]
    mean_trajectory: Any
    per_seed_trajectory: Any
    claims: list[Claim]
    notes: list[str]
    slope: TwoWayResult = field(repr=False, metadata=HIDDEN)  # read by the head comparisons


@dataclass
class HeadsEntry(Entry):
    output: ClassVar[str] = "q3_heads"
    task: str
    mode: str
    n_iterations: int
    head_a: str
    head_b: str
    design: str  # "paired" | "unpaired"
    claims: list[Claim]
    welch: dict[str, Any] | None
    direction_flip: dict[str, Any] | None
    notes: list[str]


def has_erank(rows: pd.DataFrame, column: str = ERANK) -> bool:
    return column in rows.columns and bool(rows[column].notna().any())


class Iterations(Question):
    key = "q3"
    shared_stream = True
    outputs = ("q3", "q3_heads")
    claim_outputs = ("q3", "q3_heads")
    title = "Q3: does effective rank rise over iterations, and does the head set the direction?"
    needs = "erank_per_iter"

    def at_group(self, group: GroupRows, ctx: AnalysisContext) -> list[Finding]:
        """Slope over iterations and T minus iteration 1, across seeds, for one head."""
        unablated = group.unablated
        if unablated.empty or not has_erank(unablated):
            return []
        erank = pivot_erank(unablated)
        key = group.key
        if erank.values.shape[2] < START + 2:
            return [RunNote(f"{key.as_dict()}: T={erank.values.shape[2] - 1} gives fewer "
                            "than 2 iterations: Q3 not run")]
        trend = erank_trend(erank.values, start=START, **ctx.options)
        last = trend.iterations[-1]
        setting = f"{key.task}|{key.mode}|T={key.n_iterations}"
        claims = [
            interval_claim(trend.slope, claim="effective rank changes over iterations",
                           family=f"q3|{setting}", unit="erank per iteration"),
            # The protocol's Q3 family: per-head tests (both) and the head interaction.
            interval_claim(trend.last_minus_first,
                           claim=f"effective rank differs between iteration {last} and {START}",
                           family=f"q3|{setting}", unit="erank", role="secondary"),
        ]
        entry = IterationEntry(
            **key.as_dict(), n_seeds=len(erank.seeds), seeds=list(erank.seeds),
            n_items=len(erank.item_ids), iterations=list(trend.iterations),
            mean_trajectory=trend.per_seed_trajectory.mean(axis=0),
            per_seed_trajectory=trend.per_seed_trajectory, claims=claims,
            notes=[] if len(erank.seeds) >= 2 else [
                "one seed: the trajectory is a description, not an inference"],
            slope=trend.slope)
        slope_weights, _ = iteration_weights(erank.values.shape[2], START)
        return [entry, variance_component(key.as_dict(), "q3 slope (erank per iteration)",
                                          erank.values @ slope_weights)]

    def at_run(self, records: pd.DataFrame, ctx: AnalysisContext) -> list[Finding]:
        """Compare every pair of heads (config labels) that share task, mode and T."""
        entries: list[IterationEntry] = ctx.entries("q3")  # type: ignore[assignment]
        by_setting: dict[tuple[str, str, int], list[IterationEntry]] = {}
        for entry in sorted(entries, key=lambda e: (e.task, e.mode, e.n_iterations,
                                                    e.config_label)):
            by_setting.setdefault((entry.task, entry.mode, entry.n_iterations), []).append(entry)
        return [_compare(records, a, b, ctx) for found in by_setting.values()
                for a, b in itertools.combinations(found, 2)]

    # -- presentation --------------------------------------------------------------------
    def section(self, evidence: Evidence) -> list[Block]:
        analysis, level = evidence.analysis, evidence.level
        blocks: list[Block] = [Heading(2, self.title or ""), Paragraph(
            "Effective rank (Roy and Vetterli) of each state M(t), averaged over positions, on "
            "unablated rows. Per seed: the least-squares slope over iterations 1..T (primary) "
            "and iteration T minus iteration 1 (secondary); seeds are combined with the two-way "
            "interval. A single seed's trajectory is a description, not an inference.")]
        for entry in analysis.get("q3", []):
            blocks += [Heading(3, head_scope(entry, site=False)), *entry_blocks(entry, level)]
        for entry in analysis.get("q3_heads", []):
            blocks.append(Heading(3, f"Head comparison: {entry['head_a']} vs {entry['head_b']}"))
            blocks += heads_blocks(entry, level)
        if not analysis.get("q3"):
            blocks.append(Paragraph("Not tested: no unablated rows with erank_per_iter over at "
                                    "least two thinking iterations."))
        return blocks

    def figures(self, evidence: Evidence) -> list[FigureItem]:
        analysis, intervals = evidence.analysis, intervals_caption(evidence.level)
        comparisons: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        for entry in analysis["q3_heads"]:
            comparisons.setdefault(scope_of(entry, site=False), []).append(entry)
        trajectories = "Effective rank against iteration, per head"
        slopes = "Per-seed slopes by head, and the head interaction"
        items: list[FigureItem] = []
        for scope, cells in by_scope(analysis["q3"], site=False).items():
            entries = [cells[key] for key in sorted(cells)]
            items.append(FigureSpec("erank-vs-iteration", trajectories, scope_text(scope), (
                f"{scope_text(scope)}. Bold: mean over seeds; thin: one seed; shaded: 25-75% "
                "and 10-90% of the sequences (seed-mean trajectories). M(0) is the embedding "
                f"and is not part of the slope. {intervals}"),
                lambda entries=entries: plot_erank_trajectories(
                    [erank_panel(evidence, entry) for entry in entries])))
            found = comparisons.get(scope, [])
            caption = (f"{scope_text(scope)}. Per head: the per-seed slopes of effective rank "
                       "over iterations (open dots) and their mean; below, each head difference "
                       "with its design (paired: heads swapped on the same checkpoints; "
                       "unpaired: separate checkpoints) and the direction-flip test p. "
                       f"{intervals}")
            if not found:
                caption += " The run has one head here, so there is no head interaction."
            items.append(FigureSpec("slopes-by-head", slopes, scope_text(scope), caption,
                                    lambda entries=entries, found=found:
                                    plot_slopes_by_head(entries, found)))
        if not items:
            reason = ("no unablated rows carry erank_per_iter with at least two thinking "
                      "iterations (T >= 2)")
            items = [MissingFigure("erank-vs-iteration", trajectories, reason),
                     MissingFigure("slopes-by-head", slopes, reason)]
        # Trajectories first, then slopes: each name is one numbered figure.
        return sorted(items, key=lambda item: item.name != "erank-vs-iteration")

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        q3 = [(head_scope(e, site=False), c["claim"], c["unit"], *claim_cells(c))
              for e in analysis.get("q3", []) for c in e["claims"]]
        heads = [(f"{e['task']} {e['mode']} T={e['n_iterations']}", c["claim"], e["design"],
                  *claim_cells(c), p_value((e.get("direction_flip") or {}).get("p")))
                 for e in analysis.get("q3_heads", []) for c in e["claims"]]
        return [TableView("q3", "Q3: effective rank over iterations",
                          ("group", "claim", "unit", *CLAIM_COLUMNS), tuple(q3)),
                TableView("q3_heads", "Q3: head differences and the direction flip",
                          ("setting", "claim", "design", *CLAIM_COLUMNS, "flip p"),
                          tuple(heads))]

    def verdicts(self, analysis: Mapping[str, Any]) -> list[VerdictRow]:
        rows = [VerdictRow(entry["config_label"], "effective rank per iteration",
                           scope_text(scope_of(entry, site=False)), claim)
                for entry in analysis.get("q3", []) for claim in entry["claims"]
                if claim["role"] == "primary" and not is_check(claim)]
        rows += [VerdictRow(f"{entry['head_a']} − {entry['head_b']}",
                            "slope difference (erank per iteration)",
                            scope_text(scope_of(entry, site=False)), claim)
                 for entry in analysis.get("q3_heads", []) for claim in entry["claims"]
                 if not is_check(claim)]
        return rows

    def summary(self, analysis: Mapping[str, Any]) -> list[str]:
        items = []
        for entry in analysis.get("q3", []):
            claim = entry["claims"][0]
            items.append(f"Q3, {head_scope(entry, site=False)}: effective rank "
                         f"{change_text(claim['estimate'], '', signed=False).rstrip()} per "
                         f"iteration ({interval_words(claim)}): "
                         f"{verdict_text(claim['verdict'])}.")
        for entry in analysis.get("q3_heads", []):
            flip = entry.get("direction_flip") or {}
            state = {True: f"the direction flips with the head (p = {p_value(flip.get('p'))})",
                     False: f"a flip of direction with the head is not shown (p = "
                            f"{p_value(flip.get('p'))})"}.get(
                flip.get("flips"), "the direction flip is not tested (each head needs >= 2 "
                                   "seeds)")
            items.append(f"Q3 heads, {entry['head_a']} vs {entry['head_b']}: {state}.")
        return items

    def review_claims(self, analysis: Mapping[str, Any]
                      ) -> Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]]:
        # Head comparisons name a setting, not a head: the review lists per-head claims.
        return ((entry, claim) for entry in analysis.get("q3", []) for claim in entry["claims"])


ITERATIONS = Iterations()


def _checkpoints(rows: pd.DataFrame) -> dict[int, tuple[str, ...]] | None:
    if "checkpoint" not in rows.columns:
        return None
    grouped = rows.groupby("train_seed")["checkpoint"].agg(
        lambda names: tuple(sorted(set(map(str, names)))))
    return {int(seed): value for seed, value in grouped.items()}


def _shared_seeds(checkpoints_a: dict[int, tuple[str, ...]] | None,
                  checkpoints_b: dict[int, tuple[str, ...]] | None) -> list[int]:
    """Seeds whose checkpoints are the same under both heads (the paired design); empty
    when the heads were trained separately (any seed present in both differs)."""
    if checkpoints_a is None or checkpoints_b is None:
        return []
    common = sorted(set(checkpoints_a) & set(checkpoints_b))
    if not common or any(checkpoints_a[s] != checkpoints_b[s] for s in common):
        return []
    return common


def _unablated(records: pd.DataFrame, entry: IterationEntry) -> pd.DataFrame:
    return records[(records["config_label"] == entry.config_label)
                   & (records["task"] == entry.task) & (records["mode"] == entry.mode)
                   & (records["n_iterations"] == entry.n_iterations)
                   & (records["intervention"] == "none")]


def _compare(records: pd.DataFrame, head_a: IterationEntry, head_b: IterationEntry,
             ctx: AnalysisContext) -> HeadsEntry:
    rows_a, rows_b = _unablated(records, head_a), _unablated(records, head_b)
    checkpoints_a, checkpoints_b = _checkpoints(rows_a), _checkpoints(rows_b)
    notes: list[str] = []
    shared = _shared_seeds(checkpoints_a, checkpoints_b)
    paired = bool(shared)
    if paired and (set(checkpoints_a or ()) | set(checkpoints_b or ())) != set(shared):
        # Heads swapped on the same checkpoints, but a seed ran under one head only: pair
        # on the seeds both heads have rather than lose the pairing altogether.
        left_out = sorted((set(checkpoints_a or ()) | set(checkpoints_b or ())) - set(shared))
        notes.append(f"paired on the {len(shared)} seed(s) both heads evaluated; seed(s) "
                     f"{left_out} ran under one head only and are left out")
        rows_a = rows_a[rows_a["train_seed"].isin(shared)]
        rows_b = rows_b[rows_b["train_seed"].isin(shared)]
    family = f"q3|{head_a.task}|{head_a.mode}|T={head_a.n_iterations}"
    claim_text = f"slope of {head_a.config_label} differs from {head_b.config_label}"
    slope_a, slope_b = head_a.slope, head_b.slope
    welch = None

    def entry(design: str, claims: list[Claim], flip: dict[str, Any] | None) -> HeadsEntry:
        return HeadsEntry(head_a.task, head_a.mode, head_a.n_iterations, head_a.config_label,
                          head_b.config_label, design, claims, welch, flip, notes)

    if paired:
        erank_a, erank_b = pivot_erank(rows_a), pivot_erank(rows_b)
        check_aligned(erank_a, erank_b, f"head {head_b.config_label}")
        result = compare_heads_paired(erank_a.values, erank_b.values, rng=ctx.rng,
                                      start=START, level=ctx.level, n_boot=ctx.n_boot)
        claim = interval_claim(result, claim=claim_text, family=family,
                               unit="erank per iteration")
        if result.n_seeds < 2:
            notes.append(ONE_SEED_NOTE)
    else:
        if min(slope_a.n_seeds, slope_b.n_seeds) < 2:
            notes.append("heads on separate checkpoints need >= 2 checkpoints per head: not "
                         "compared")
            return entry("unpaired", [], None)
        comparison = compare_heads_unpaired(np.asarray(slope_a.per_seed),
                                            np.asarray(slope_b.per_seed), rng=ctx.rng,
                                            level=ctx.level)
        claim = Claim(claim=claim_text, family=family, role="primary",
                      unit="erank per iteration", estimate=comparison.estimate,
                      e1=[math.nan, math.nan], p_e1=None,
                      e1_method="none: separate checkpoints, the unit is the checkpoint",
                      e1_bootstrap=None, p_e1_bootstrap=None, e3=list(comparison.interval),
                      p_e3=comparison.p_welch, df_e3=comparison.welch_df, se_e3=None,
                      per_seed=list(slope_a.per_seed) + list(slope_b.per_seed),
                      n_seeds=comparison.n_a + comparison.n_b, n_items=slope_a.n_items)
        welch = {"t": comparison.welch_t, "df": comparison.welch_df, "p": comparison.p_welch,
                 "p_permutation": comparison.p_permutation,
                 "permutation_method": comparison.permutation_method,
                 "warning": comparison.warning}
        if comparison.warning:
            notes.append(comparison.warning)
    forward = direction_flip(slope_a, slope_b, alpha=ctx.alpha)
    backward = direction_flip(slope_b, slope_a, alpha=ctx.alpha)
    # Either orientation counts as a flip, so the two IUT p-values get a Bonferroni factor 2.
    p_flip = (min(1.0, 2 * min(forward.p, backward.p))
              if math.isfinite(forward.p) and math.isfinite(backward.p) else math.nan)
    flip = {"p_a_positive": forward.p_a_positive, "p_b_negative": forward.p_b_negative,
            "p_b_positive": backward.p_a_positive, "p_a_negative": backward.p_b_negative,
            "p": p_flip, "flips": bool(p_flip < ctx.alpha) if math.isfinite(p_flip) else None,
            "method": "intersection-union of one-sided E3 tests, both orientations, "
                      "Bonferroni x2"}
    return entry("paired" if paired else "unpaired", [claim], flip)


def entry_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q3`` entry: the mean trajectory, the slope and the last-minus-first change."""
    trajectory = entry.get("mean_trajectory") or []
    iterations = entry.get("iterations") or []
    blocks: list[Block] = []
    if trajectory and iterations:
        first, last = iterations[0], iterations[-1]
        blocks.append(Paragraph(f"Mean effective rank over {entry['n_seeds']} seed(s) and "
                     f"{entry['n_items']} sequences: {number(trajectory[0])} at M(0) (the "
                     f"embedding), {number(trajectory[first])} at M({first}) and "
                     f"{number(trajectory[last])} at M({last}). Slopes use iterations "
                     f"{first}..{last}."))
    for claim in entry["claims"]:
        if claim["role"] == "primary":
            lead = f"Effective rank {change_text(claim['estimate'], 'per iteration')}."
        else:
            lead = f"{claim['claim'].capitalize()}: {number(claim['estimate'], signed=True)}."
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"))
    return blocks + note_blocks(entry)


def heads_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q3_heads`` entry: design, slope difference, Welch test, direction flip."""
    a, b = entry["head_a"], entry["head_b"]
    design = ("paired: both heads were evaluated on the same checkpoints, so slopes are "
              "compared seed by seed" if entry["design"] == "paired" else
              "unpaired: the heads are separate checkpoints, so the unit is the checkpoint "
              "(Welch t on per-checkpoint slopes; there is no E1 for this contrast)")
    blocks: list[Block] = [Paragraph(f"{a} vs {b} ({entry['task']} {entry['mode']} "
                                     f"T={entry['n_iterations']}), {design}.")]
    paired = entry["design"] == "paired"
    for claim in entry["claims"]:
        lead = (f"The slope of {a} minus that of {b} is "
                f"{number(claim['estimate'], signed=True)} erank per iteration.")
        blocks += claim_blocks(claim, level=level, lead=lead, per_seed=paired,
                               e3_method="two-way seeds x problems interval" if paired else
                               "Welch interval on per-checkpoint slopes")
    texts = []
    welch = entry.get("welch")
    if welch:
        notes = entry.get("notes", [])
        warning = welch.get("warning")
        texts.append(f"Welch t = {number(welch['t'])} ({number(welch['df'])} df), p = "
                     f"{p_value(welch['p'])}; permutation p = "
                     f"{p_value(welch.get('p_permutation'))} ({welch.get('permutation_method')})."
                     + (f" {warning}." if warning and warning not in notes else ""))
    flip = entry.get("direction_flip")
    if flip:
        forward = max(_or_one(flip.get("p_a_positive")), _or_one(flip.get("p_b_negative")))
        backward = max(_or_one(flip.get("p_b_positive")), _or_one(flip.get("p_a_negative")))
        up, down = (a, b) if forward <= backward else (b, a)
        if flip.get("flips") is True:
            texts.append(f"**The direction flips with the head** {E3_WORDS}: effective rank "
                         f"rises over iterations with {up} and falls with {down} "
                         f"(p = {p_value(flip['p'])}; {flip['method']}).")
        elif flip.get("flips") is False:
            texts.append(f"A flip of direction between the heads is **not shown** "
                         f"(p = {p_value(flip['p'])}; {flip['method']}).")
        else:
            texts.append("The direction-flip test needs an E3 slope for both heads (>= 2 "
                         "seeds each): not tested.")
    return blocks + [Paragraph(text) for text in texts] + note_blocks(entry)


def _or_one(value: Any) -> float:
    return 1.0 if value is None else float(value)


def erank_panel(evidence: Evidence, entry: Mapping[str, Any], column: str = ERANK
                ) -> ErankPanel:
    """A ``q3`` entry (or, with ``column="latent_erank"``, a ``q5`` entry) with its
    unablated erank array (n_seeds, n_items, n_steps) and E1/E3 intervals of the mean at
    each step (drawn from their own generator, so the analysis is unaffected)."""
    rows = group_rows(evidence.records, entry, intervention="none")
    values = pivot_erank(rows, column=column).values
    rng = np.random.default_rng([evidence.seed, 5])
    e1 = np.full((values.shape[2], 2), np.nan)
    e3 = np.full((values.shape[2], 2), np.nan)
    if values.shape[1] >= 2 and np.all(np.isfinite(values)):
        for step in range(values.shape[2]):
            result = mean_interval(values[:, :, step], rng=rng, level=evidence.level,
                                   n_boot=evidence.n_boot)
            e1[step], e3[step] = result.e1, result.e3
    return ErankPanel(entry=entry, values=values, e1=e1, e3=e3)
