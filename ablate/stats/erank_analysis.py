"""Q3 (effective rank over iterations, head comparisons) and Q4 (depth) on unablated rows,
appended to an analysis dict (schema in ablate.stats.analysis).

    >>> analyse_iterations(analysis, group, unablated, context)  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ablate.errors import AblateError
from ablate.stats.ablation_analysis import ONE_SEED_NOTE, add_variance_entry
from ablate.stats.claims import AnalysisContext, GroupKey, interval_claim
from ablate.stats.depth import (
    DepthResult,
    RankAssociation,
    depth_agreement,
    depth_association,
)
from ablate.stats.frames import check_aligned, item_covariates, pivot_erank
from ablate.stats.iterations import (
    compare_heads_paired,
    compare_heads_unpaired,
    direction_flip,
    erank_trend,
    iteration_weights,
)

ERANK = "erank_per_iter"
START = 1  # first iteration in slopes: M(0) is the embedding, not a thinking iteration


def _has_erank(rows: pd.DataFrame) -> bool:
    return ERANK in rows.columns and bool(rows[ERANK].notna().any())


def analyse_iterations(analysis: dict[str, Any], group: GroupKey, unablated: pd.DataFrame,
                       context: AnalysisContext) -> None:
    """Q3 for one head: slope over iterations and T minus iteration 1, across seeds."""
    if not _has_erank(unablated):
        return
    erank = pivot_erank(unablated)
    if erank.values.shape[2] < START + 2:
        analysis["notes"].append(f"{group.as_dict()}: T={erank.values.shape[2] - 1} gives fewer "
                                 "than 2 iterations: Q3 not run")
        return
    options = {"rng": context.rng, "level": context.level, "n_boot": context.n_boot}
    trend = erank_trend(erank.values, start=START, **options)
    context.slopes[group] = trend.slope
    last = trend.iterations[-1]
    claims = [
        interval_claim(trend.slope, claim="effective rank changes over iterations",
                       family=f"q3|{group.task}|{group.mode}|T={group.n_iterations}",
                       unit="erank per iteration"),
        interval_claim(trend.last_minus_first,
                       claim=f"effective rank differs between iteration {last} and {START}",
                       family=f"q3-change|{group.task}|{group.mode}|T={group.n_iterations}",
                       unit="erank", role="secondary"),
    ]
    analysis["q3"].append({
        **group.as_dict(), "n_seeds": len(erank.seeds), "seeds": list(erank.seeds),
        "n_items": len(erank.item_ids), "iterations": list(trend.iterations),
        "mean_trajectory": trend.per_seed_trajectory.mean(axis=0),
        "per_seed_trajectory": trend.per_seed_trajectory, "claims": claims,
        "notes": [] if len(erank.seeds) >= 2 else [
            "one seed: the trajectory is a description, not an inference"]})
    slope_weights, _ = iteration_weights(erank.values.shape[2], START)
    add_variance_entry(analysis, group.as_dict(), "q3 slope (erank per iteration)",
                       erank.values @ slope_weights)


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


def analyse_heads(analysis: dict[str, Any], records: pd.DataFrame,
                  context: AnalysisContext) -> None:
    """Compare every pair of heads (config labels) that share task, mode and T."""
    by_setting: dict[tuple[str, str, int], list[GroupKey]] = {}
    for group in sorted(context.slopes, key=lambda g: (g.task, g.mode, g.n_iterations,
                                                       g.config_label)):
        by_setting.setdefault((group.task, group.mode, group.n_iterations), []).append(group)
    for groups in by_setting.values():
        for head_a, head_b in itertools.combinations(groups, 2):
            _compare(analysis, records, head_a, head_b, context)


def _unablated(records: pd.DataFrame, group: GroupKey) -> pd.DataFrame:
    return records[(records["config_label"] == group.config_label)
                   & (records["task"] == group.task) & (records["mode"] == group.mode)
                   & (records["n_iterations"] == group.n_iterations)
                   & (records["intervention"] == "none")]


def _compare(analysis: dict[str, Any], records: pd.DataFrame, head_a: GroupKey,
             head_b: GroupKey, context: AnalysisContext) -> None:
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
    slope_a, slope_b = context.slopes[head_a], context.slopes[head_b]
    welch = None
    if paired:
        erank_a, erank_b = pivot_erank(rows_a), pivot_erank(rows_b)
        check_aligned(erank_a, erank_b, f"head {head_b.config_label}")
        result = compare_heads_paired(erank_a.values, erank_b.values, rng=context.rng,
                                      start=START, level=context.level, n_boot=context.n_boot)
        claim = interval_claim(result, claim=claim_text, family=family,
                               unit="erank per iteration")
        if result.n_seeds < 2:
            notes.append(ONE_SEED_NOTE)
    else:
        if min(slope_a.n_seeds, slope_b.n_seeds) < 2:
            notes.append("heads on separate checkpoints need >= 2 checkpoints per head: not "
                         "compared")
            analysis["q3_heads"].append(_heads_entry(head_a, head_b, "unpaired", [], None,
                                                     None, notes))
            return
        comparison = compare_heads_unpaired(np.asarray(slope_a.per_seed),
                                            np.asarray(slope_b.per_seed), rng=context.rng,
                                            level=context.level)
        claim = {"claim": claim_text, "family": family, "role": "primary",
                 "unit": "erank per iteration", "estimate": comparison.estimate,
                 "e1": [math.nan, math.nan], "p_e1": None,
                 "e1_method": "none: separate checkpoints, the unit is the checkpoint",
                 "e3": list(comparison.interval), "p_e3": comparison.p_welch,
                 "df_e3": comparison.welch_df, "se_e3": None,
                 "per_seed": list(slope_a.per_seed) + list(slope_b.per_seed),
                 "n_seeds": comparison.n_a + comparison.n_b, "n_items": slope_a.n_items,
                 "p_holm_e1": None, "p_holm_e3": None, "verdict": None, "notes": []}
        welch = {"t": comparison.welch_t, "df": comparison.welch_df, "p": comparison.p_welch,
                 "p_permutation": comparison.p_permutation,
                 "permutation_method": comparison.permutation_method,
                 "warning": comparison.warning}
        if comparison.warning:
            notes.append(comparison.warning)
    forward = direction_flip(slope_a, slope_b, alpha=context.alpha)
    backward = direction_flip(slope_b, slope_a, alpha=context.alpha)
    # Either orientation counts as a flip, so the two IUT p-values get a Bonferroni factor 2.
    p_flip = (min(1.0, 2 * min(forward.p, backward.p))
              if math.isfinite(forward.p) and math.isfinite(backward.p) else math.nan)
    flip = {"p_a_positive": forward.p_a_positive, "p_b_negative": forward.p_b_negative,
            "p_b_positive": backward.p_a_positive, "p_a_negative": backward.p_b_negative,
            "p": p_flip, "flips": bool(p_flip < context.alpha) if math.isfinite(p_flip) else None,
            "method": "intersection-union of one-sided E3 tests, both orientations, "
                      "Bonferroni x2"}
    analysis["q3_heads"].append(_heads_entry(head_a, head_b, "paired" if paired else "unpaired",
                                             [claim], welch, flip, notes))


def _heads_entry(head_a: GroupKey, head_b: GroupKey, design: str, claims: list[dict[str, Any]],
                 welch: dict[str, Any] | None, flip: dict[str, Any] | None,
                 notes: list[str]) -> dict[str, Any]:
    return {"task": head_a.task, "mode": head_a.mode, "n_iterations": head_a.n_iterations,
            "head_a": head_a.config_label, "head_b": head_b.config_label, "design": design,
            "claims": claims, "welch": welch, "direction_flip": flip, "notes": notes}


def analyse_depth(analysis: dict[str, Any], group: GroupKey, unablated: pd.DataFrame,
                  context: AnalysisContext) -> None:
    """Q4 for one head: erank at M(T) against depth, adjusted for length."""
    if not _has_erank(unablated) or "depth_annotations" not in unablated.columns:
        return
    if not unablated["depth_annotations"].notna().any():
        return
    erank = pivot_erank(unablated)
    final = erank.values[:, :, -1]  # (n_seeds, n_items): erank of M(T)
    covariates = item_covariates(unablated, erank.item_ids)
    notes: list[str] = []
    results, claims = depth_claims(analysis, group, final, covariates, context,
                                   measure="effective rank at M(T)",
                                   families=("q4", "q4-lines"), question="Q4", notes=notes)
    if "depth_annotations" not in results:
        return
    summary = depth_summary(results["depth_annotations"], final, covariates)
    analysis["q4"].append({
        **group.as_dict(), "erank_iteration": erank.values.shape[2] - 1, **summary,
        "claims": claims,
        "notes": notes + ([f"{summary['n_excluded_unknown_depth']} item(s) with unknown "
                           "depth excluded"] if summary["n_excluded_unknown_depth"] else [])
                 + ([] if len(erank.seeds) >= 2 else [ONE_SEED_NOTE])})


DEPTH_COLUMNS = (("depth_annotations", "primary"), ("depth_lines", "secondary"))


def depth_claims(analysis: dict[str, Any], group: GroupKey, erank: np.ndarray,
                 covariates: pd.DataFrame, context: AnalysisContext, *, measure: str,
                 families: tuple[str, str], question: str, notes: list[str],
                 ) -> tuple[dict[str, DepthResult], list[dict[str, Any]]]:
    """Length-adjusted depth slopes of ``erank`` (n_seeds, n_items), per item covariates
    from ``item_covariates``: calculator annotations (primary, family ``families[0]``) and
    solution lines (secondary, ``families[1]``), each where depth is known for >= 3 items
    and takes >= 2 values. A fit that fails becomes a run note, a degenerate E1 model a note
    in ``notes``. Returns the results by depth column and the claims."""
    options = {"rng": context.rng, "level": context.level, "n_boot": context.n_boot}
    n_tokens = covariates["n_tokens"].to_numpy()
    claims, results = [], {}
    for (column, role), family in zip(DEPTH_COLUMNS, families, strict=True):
        depth = covariates[column].to_numpy()
        known = depth[np.isfinite(depth)]
        if known.size < 3 or np.unique(known).size < 2:
            continue
        try:
            result = depth_association(erank, depth, n_tokens,
                                       rank_statistics=role == "primary", **options)
        except AblateError as error:
            analysis["notes"].append(f"{group.as_dict()} {question} on {column}: {error}")
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
    return results, claims


def depth_summary(primary: DepthResult, erank: np.ndarray, covariates: pd.DataFrame
                  ) -> dict[str, Any]:
    """The descriptive part of a depth entry: sizes, rank correlations, the agreement of
    the two depth measures and the erank-length correlation (the confounding check)."""
    return {"n_items": primary.n_items, "n_excluded_unknown_depth": primary.n_excluded,
            "length_adjusted": primary.length_adjusted,
            "kendall_tau_b": rank_dict(primary.kendall_tau_b),
            "partial_spearman": rank_dict(primary.partial_spearman),
            "depth_agreement": depth_agreement(covariates["depth_annotations"].to_numpy(),
                                               covariates["depth_lines"].to_numpy()),
            "erank_length_spearman": float(stats.spearmanr(
                erank.mean(axis=0), covariates["n_tokens"]).statistic)}


def rank_dict(association: RankAssociation | None) -> dict[str, Any] | None:
    if association is None:
        return None
    return {"estimate": association.estimate, "interval": list(association.interval),
            "p": association.p, "method": association.method}
