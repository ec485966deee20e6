"""Q5, matrix-CODI latent thoughts, on unablated rows, appended to an analysis dict (schema
in ablate.stats.analysis): the effective rank of each latent thought Z_1..Z_n (column
``latent_erank``: its profile over latent steps and its link to depth, adjusted for length)
and the effect of the number of latents (L_n minus the no-thought baseline L_0).

Latent thoughts are numbered from 1 here (Z_1 is the first thought); the ablation site
``latent.j`` of the study is 0-based and edits Z_{j+1}.

    >>> analyse_latents(analysis, group, unablated, context)  # doctest: +SKIP
    >>> analyse_latent_counts(analysis, records, context)  # doctest: +SKIP
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from ablate.errors import AblateError
from ablate.stats.ablation_analysis import ONE_SEED_NOTE, add_variance_entry
from ablate.stats.claims import AnalysisContext, GroupKey, interval_claim
from ablate.stats.depth import DepthResult, depth_association
from ablate.stats.erank_analysis import depth_claims, depth_summary
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


def has_latents(rows: pd.DataFrame) -> bool:
    """True when some row carries a non-empty ``latent_erank`` list."""
    if LATENT_ERANK not in rows.columns:
        return False
    return any(value is not None and len(value) > 0 for value in rows[LATENT_ERANK])


def analyse_latents(analysis: dict[str, Any], group: GroupKey, unablated: pd.DataFrame,
                    context: AnalysisContext) -> None:
    """Q5 for one group (one number of latents): the erank profile over latent steps and
    the depth association of the mean latent erank, as one ``q5`` entry."""
    if not has_latents(unablated):
        return
    try:
        erank = pivot_erank(unablated, column=LATENT_ERANK)
    except AblateError as error:
        analysis["notes"].append(f"{group.as_dict()} Q5: {error}")
        return
    values = erank.values  # (n_seeds, n_items, n_latents)
    n_latents = values.shape[2]
    if not np.all(np.isfinite(values)):
        analysis["notes"].append(f"{group.as_dict()} Q5: latent_erank has NaN/inf: not run")
        return
    notes: list[str] = []
    claims = _profile_claims(analysis, group, erank, context, notes)
    covariates = item_covariates(unablated, erank.item_ids)
    depth, found = _depth(analysis, group, values.mean(axis=2), covariates, context, notes)
    claims += found
    if depth is not None:
        depth["per_latent"] = _per_latent_depth(values, covariates, context)
    if len(erank.seeds) < 2:
        notes.append(ONE_SEED_NOTE)
    analysis["q5"].append({
        **group.as_dict(), "n_latents": n_latents, "n_seeds": len(erank.seeds),
        "seeds": list(erank.seeds), "n_items": len(erank.item_ids),
        "latents": list(range(1, n_latents + 1)),
        "mean_profile": values.mean(axis=(0, 1)),
        "per_seed_profile": values.mean(axis=1), "claims": claims, "depth": depth,
        "notes": notes})


def _profile_claims(analysis: dict[str, Any], group: GroupKey, erank: SeedItemArray,
                    context: AnalysisContext, notes: list[str]) -> list[dict[str, Any]]:
    """Slope per latent step (primary) and Z_n minus Z_1 (secondary), over all latents."""
    values = erank.values
    if values.shape[2] < START + 2:
        notes.append(f"{values.shape[2]} latent thought(s): the profile over latent steps "
                     "needs >= 2 latents, so its slope is not tested")
        return []
    trend = erank_trend(values, rng=context.rng, start=START, level=context.level,
                        n_boot=context.n_boot)
    n_latents = values.shape[2]
    slope_weights, _ = iteration_weights(n_latents, START)
    add_variance_entry(analysis, group.as_dict(), "q5 slope (erank per latent step)",
                       values @ slope_weights)
    return [
        interval_claim(trend.slope, claim="effective rank changes over latent steps",
                       family=group.family("q5"), unit="erank per latent step")
        | {"aspect": "profile"},
        interval_claim(trend.last_minus_first,
                       claim=f"effective rank differs between latent {n_latents} and 1",
                       family=group.family("q5-change"), unit="erank", role="secondary")
        | {"aspect": "profile"},
    ]


def _depth(analysis: dict[str, Any], group: GroupKey, mean_erank: np.ndarray,
           covariates: pd.DataFrame, context: AnalysisContext, notes: list[str]
           ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Mean latent erank per item (n_seeds, n_items) against depth, adjusted for log
    n_tokens, as Q4 does for M(T). Returns the summary (None when the primary depth cannot
    be tested) and the claims."""
    results, claims = depth_claims(analysis, group, mean_erank, covariates, context,
                                   measure="mean latent effective rank",
                                   families=("q5-depth", "q5-depth-lines"), question="Q5",
                                   notes=notes)
    claims = [claim | {"aspect": "depth"} for claim in claims]
    primary: DepthResult | None = results.get("depth_annotations")
    if primary is None:
        notes.append("depth (calculator annotations) is known for fewer than 3 problems or "
                     "takes one value: the depth association is not tested")
        return None, claims
    if primary.n_excluded:
        notes.append(f"{primary.n_excluded} problem(s) with unknown depth excluded from the "
                     "depth statistics")
    return depth_summary(primary, mean_erank, covariates), claims


def _per_latent_depth(values: np.ndarray, covariates: pd.DataFrame,
                      context: AnalysisContext) -> dict[str, Any]:
    """Exploratory: the length-adjusted depth slope of each latent's erank, values
    (n_seeds, n_items, n_latents), Benjamini-Hochberg over latents (E3 p with >= 2 seeds,
    else the E1 bootstrap p)."""
    depth = covariates["depth_annotations"].to_numpy()
    n_tokens = covariates["n_tokens"].to_numpy()
    results = [depth_association(values[:, :, j], depth, n_tokens, rng=context.rng,
                                 level=context.level, n_boot=context.n_boot,
                                 rank_statistics=False, model_e1=False).adjusted_slope
               for j in range(values.shape[2])]
    p_name = "p_e3" if values.shape[0] >= 2 else "p_e1"
    p_values = [getattr(result, p_name) for result in results]
    return {"label": "exploratory", "latents": list(range(1, values.shape[2] + 1)),
            "estimate": [r.estimate for r in results], "e1": [list(r.e1) for r in results],
            "e3": [list(r.e3) for r in results], "p": p_values, "p_method": p_name,
            "p_bh": benjamini_hochberg(p_values).tolist(),
            "unit": "erank per unit of depth_annotations"}


def base_label(config_label: str) -> str:
    """The model behind a study group: "codi-L6" -> "codi" (the study's "-L<n>" suffix)."""
    return LATENT_SUFFIX.sub("", config_label)


def analyse_latent_counts(analysis: dict[str, Any], records: pd.DataFrame,
                          context: AnalysisContext) -> None:
    """``q5_latents``: per base model (task, mode, T and config_label without "-L<n>")
    and outcome, each number of latents n > 0 minus n = 0 on unablated rows, paired per
    (train_seed, item). Nothing when the run has no n = 0 baseline."""
    if "n_latents" not in records.columns:
        return
    unablated = records[records["intervention"] == "none"]
    unablated = unablated.assign(base_label=unablated["config_label"].astype(str).map(base_label))
    keys = ["base_label", "task", "mode", "n_iterations"]
    for (label, task, mode, n_iterations), rows in unablated.groupby(keys, sort=True):
        counts = sorted({int(n) for n in rows["n_latents"].dropna()})
        if 0 not in counts or len(counts) < 2:
            continue
        group = GroupKey(str(label), str(task), str(mode), int(n_iterations))
        for outcome, (scale, unit) in LATENT_OUTCOMES.items():
            _latent_count_entry(analysis, group, rows, counts, outcome, scale, unit, context)


def _latent_count_entry(analysis: dict[str, Any], group: GroupKey, rows: pd.DataFrame,
                        counts: list[int], outcome: str, scale: float, unit: str,
                        context: AnalysisContext) -> None:
    if outcome not in rows.columns or not rows[outcome].notna().any():
        return
    arrays: dict[int, SeedItemArray] = {}
    try:
        for n in counts:
            arrays[n] = pivot_condition(rows, outcome, n_latents=n)
            check_aligned(arrays[0], arrays[n], f"L{n} ({outcome})")
    except AblateError as error:
        analysis["notes"].append(f"{group.as_dict()} Q5 number of latents, {outcome}: {error}")
        return
    if any(not np.all(np.isfinite(a.values)) for a in arrays.values()):
        analysis["notes"].append(f"{outcome} has missing values at {group.as_dict()}: Q5 "
                                 "number of latents skipped")
        return
    baseline = scale * arrays[0].values
    claims = []
    for n in counts[1:]:
        result = paired_difference(scale * arrays[n].values, baseline, rng=context.rng,
                                   level=context.level, n_boot=context.n_boot)
        claims.append(interval_claim(result, claim=f"{outcome} differs between {n} latents "
                                     "and none", family=group.family("q5-latents", outcome),
                                     unit=unit) | {"n_latents": n})
    reference = arrays[0]
    analysis["q5_latents"].append({
        **group.as_dict(), "outcome": outcome, "unit": unit, "reference_n_latents": 0,
        "n_latents": counts, "n_seeds": len(reference.seeds), "seeds": list(reference.seeds),
        "n_items": len(reference.item_ids),
        "means": [{"n_latents": n, "estimate": float(scale * arrays[n].values.mean()),
                   "per_seed": scale * arrays[n].values.mean(axis=1)} for n in counts],
        "claims": claims, "notes": [] if len(reference.seeds) >= 2 else [ONE_SEED_NOTE]})
