"""Q1 (trend over k), Q2 (SVD vs random) and per-condition levels for one group and site,
appended to an analysis dict (schema in ablate.stats.analysis).

    >>> analyse_site(analysis, group, "head_input", site_rows, unablated, context)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ablate.stats.claims import AnalysisContext, GroupKey, interval_claim
from ablate.stats.controls import (
    LN2,
    bits_per_byte,
    bits_per_byte_contrast,
    control_contrast,
    random_mean,
)
from ablate.stats.frames import (
    DrawArray,
    SeedItemArray,
    check_aligned,
    pivot_condition,
    pivot_draws,
)
from ablate.stats.intervals import TwoWayResult, mean_interval
from ablate.stats.power import minimum_detectable_effect, variance_components
from ablate.stats.trend import accuracy_trend, halving_weights, unablated_contrast

# outcome column -> (scale, unit): accuracy is reported in percentage points.
OUTCOMES = {"correct": (100.0, "pp"), "answer_loglik": (1.0, "nats")}
ONE_SEED_NOTE = "one seed: description only, no inference across seeds"


def _usable(rows: pd.DataFrame, column: str) -> bool:
    return column in rows.columns and bool(rows[column].notna().any())


def _level_row(condition: str, k: int | None, result: TwoWayResult) -> dict[str, Any]:
    return {"condition": condition, "k": k, "estimate": result.estimate, "e1": list(result.e1),
            "e3": list(result.e3), "per_seed": list(result.per_seed)}


def add_variance_entry(analysis: dict[str, Any], keys: dict[str, Any], quantity: str,
                       per_item: np.ndarray) -> None:
    """Variance components and the minimum detectable effect of per-item values (S, n)."""
    components = variance_components(per_item)
    factor = (minimum_detectable_effect(components.n_seeds) if components.n_seeds >= 2
              else float("nan"))
    analysis["power"]["variance_components"].append({
        **keys, "quantity": quantity, "seed": components.seed, "problem": components.problem,
        "residual": components.residual, "per_seed_sd": components.per_seed_sd,
        "n_seeds": components.n_seeds, "n_items": components.n_items,
        "mde_in_seed_sd": factor, "mde_in_units": factor * components.per_seed_sd})


def _pivot_all(rows: pd.DataFrame, column: str, ks: list[int], reference: SeedItemArray | None,
               draws: bool) -> dict[int, Any]:
    arrays: dict[int, SeedItemArray | DrawArray] = {}
    for k in ks:
        array = (pivot_draws(rows, column, k=k) if draws else pivot_condition(rows, column, k=k))
        if reference is not None:
            check_aligned(reference, array, f"{rows['intervention'].iloc[0]} k={k}")
        arrays[k] = array
    return arrays


def analyse_site(analysis: dict[str, Any], group: GroupKey, site: str, site_rows: pd.DataFrame,
                 unablated: pd.DataFrame, context: AnalysisContext) -> None:
    """Levels, Q1 and Q2 for every outcome available at one site of one group."""
    svd_rows = site_rows[site_rows["intervention"] == "svd_rank_k"]
    random_rows = site_rows[site_rows["intervention"] == "random_rank_k"]
    svd_ks = sorted({int(k) for k in svd_rows["k"].dropna()})
    random_ks = sorted({int(k) for k in random_rows["k"].dropna()})
    keys = {**group.as_dict(), "site": site}
    for outcome, (scale, unit) in OUTCOMES.items():
        if not _usable(site_rows, outcome):
            continue
        reference = (pivot_condition(svd_rows, outcome, k=svd_ks[0]) if svd_ks
                     else pivot_condition(random_rows, outcome, k=random_ks[0], draw=int(
                         random_rows["draw"].dropna().min())))
        svd = _pivot_all(svd_rows, outcome, svd_ks, reference, draws=False)
        random = _pivot_all(random_rows, outcome, random_ks, reference, draws=True)
        plain = None
        if _usable(unablated, outcome):
            plain = pivot_condition(unablated, outcome)
            check_aligned(reference, plain, f"unablated ({group.config_label})")
        arrays = [a.values for a in [*svd.values(), *random.values()]]
        arrays += [] if plain is None else [plain.values]
        if any(not np.all(np.isfinite(a)) for a in arrays):
            analysis["notes"].append(f"{outcome} has missing values at {keys}: skipped")
            continue
        _levels(analysis, keys, outcome, scale, unit, svd, random, plain, context)
        if len(svd_ks) >= 2:
            _q1(analysis, group, keys, outcome, scale, unit, svd, plain, reference, context)
        common = sorted(set(svd_ks) & set(random_ks))
        if common:
            _q2(analysis, group, keys, outcome, scale, unit, {k: svd[k] for k in common},
                {k: random[k] for k in common}, reference, context)
    if _usable(site_rows, "solution_nats") and _usable(site_rows, "solution_bytes"):
        _bits_per_byte(analysis, group, keys, svd_rows, random_rows, unablated, svd_ks,
                       random_ks, context)


def _levels(analysis: dict[str, Any], keys: dict[str, Any], outcome: str, scale: float,
            unit: str, svd: dict[int, Any], random: dict[int, Any], plain: SeedItemArray | None,
            context: AnalysisContext) -> None:
    options = {"rng": context.rng, "level": context.level, "n_boot": context.n_boot}
    rows = []
    if plain is not None:
        rows.append(_level_row("none", None, mean_interval(scale * plain.values, **options)))
    for k, array in svd.items():
        rows.append(_level_row("svd_rank_k", k, mean_interval(scale * array.values, **options)))
    for k, array in random.items():
        rows.append(_level_row("random_rank_k", k, random_mean(scale * array.values, **options)))
    analysis["levels"].append({**keys, "outcome": outcome, "unit": unit, "rows": rows})


def _q1(analysis: dict[str, Any], group: GroupKey, keys: dict[str, Any], outcome: str,
        scale: float, unit: str, svd: dict[int, SeedItemArray], plain: SeedItemArray | None,
        reference: SeedItemArray, context: AnalysisContext) -> None:
    values = {k: array.values for k, array in svd.items()}
    trend = accuracy_trend(values, rng=context.rng, level=context.level, n_boot=context.n_boot,
                           alpha=context.alpha, scale=scale)
    family = group.family("q1", keys["site"], outcome)
    ols = trend.slope_ols
    claims = [interval_claim(trend.slope, claim=f"{outcome} changes when k is halved",
                             family=family, unit=f"{unit} per halving of k",
                             e1_model={"interval": ols.interval, "p": ols.p,
                                       "method": ols.method})]
    notes = list(trend.notes)
    if plain is not None:
        contrast = unablated_contrast(plain.values, values, rng=context.rng,
                                      level=context.level, n_boot=context.n_boot, scale=scale)
        claims.append(interval_claim(contrast, claim=f"unablated {outcome} differs from "
                                     f"k={max(values)}", family=family, unit=unit)
                      | {"k": max(values)})
    else:
        notes.append("no unablated rows: the unablated vs largest-k contrast is not run")
    odds = trend.odds_ratio
    analysis["q1"].append({
        **keys, "outcome": outcome, "unit": unit, "n_seeds": len(reference.seeds),
        "seeds": list(reference.seeds), "n_items": len(reference.item_ids),
        "ks": list(trend.ks), "claims": claims,
        "odds_ratio_per_doubling": None if odds is None else {
            "estimate": odds.estimate, "interval": list(odds.interval), "p": odds.p,
            "method": odds.method, "note": odds.note},
        "page": None if trend.page is None else {
            "statistic": trend.page.statistic, "p": trend.page.p, "method": trend.page.method},
        "adjacent": [{"k_low": c.k_low, "k_high": c.k_high, "estimate": c.result.estimate,
                      "e1": list(c.result.e1), "e3": list(c.result.e3), "p_one_e1": c.p_one_e1,
                      "p_one_e3": c.p_one_e3} for c in trend.adjacent],
        "monotone": {"e1": trend.monotone_e1, "e3": trend.monotone_e3, "alpha": context.alpha,
                     "rule": "intersection-union: every adjacent one-sided contrast rejects"},
        "per_seed_means": trend.per_seed_means, "notes": notes})
    stacked = np.stack([values[k] for k in trend.ks], axis=1)
    per_item = np.einsum("k,skn->sn", halving_weights(trend.ks, scale), stacked)
    add_variance_entry(analysis, keys, f"q1 slope ({outcome}, {unit} per halving)", per_item)


def _q2(analysis: dict[str, Any], group: GroupKey, keys: dict[str, Any], outcome: str,
        scale: float, unit: str, svd: dict[int, SeedItemArray], random: dict[int, DrawArray],
        reference: SeedItemArray, context: AnalysisContext) -> None:
    margin = context.tost_margin if outcome == "correct" else None
    family = group.family("q2", keys["site"], outcome)
    claims = []
    for k in sorted(svd):
        result = control_contrast(scale * svd[k].values, scale * random[k].values,
                                  rng=context.rng, level=context.level, n_boot=context.n_boot)
        claim = interval_claim(result, claim=f"SVD rank-{k} {outcome} differs from random "
                               f"rank-{k}", family=family, unit=unit)
        claim["k"] = k
        claim["p_tost_e1"] = None if margin is None else result.tost(margin, "e1")
        claim["p_tost_e3"] = None if margin is None else result.tost(margin, "e3")
        claim["equivalent_e3"] = (None if claim["p_tost_e3"] is None
                                  or not np.isfinite(claim["p_tost_e3"])
                                  else bool(claim["p_tost_e3"] < context.alpha))
        claims.append(claim)
        per_item = scale * (svd[k].values - random[k].values.mean(axis=1))
        add_variance_entry(analysis, keys, f"q2 svd - random k={k} ({outcome}, {unit})",
                           per_item)
    notes = [] if len(reference.seeds) >= 2 else [ONE_SEED_NOTE]
    if margin is None and outcome == "correct":
        notes.append("no equivalence margin: 'no different from random' cannot be claimed")
    analysis["q2"].append({**keys, "outcome": outcome, "unit": unit,
                           "n_seeds": len(reference.seeds), "seeds": list(reference.seeds),
                           "n_items": len(reference.item_ids),
                           "n_draws": len(next(iter(random.values())).draws), "margin": margin,
                           "claims": claims, "notes": notes})


def _bits_per_byte(analysis: dict[str, Any], group: GroupKey, keys: dict[str, Any],
                   svd_rows: pd.DataFrame, random_rows: pd.DataFrame, unablated: pd.DataFrame,
                   svd_ks: list[int], random_ks: list[int], context: AnalysisContext) -> None:
    """Bits per byte: a ratio of sums over documents, so documents are resampled."""
    if not svd_ks:
        return
    reference = pivot_condition(svd_rows, "solution_nats", k=svd_ks[0])
    n_bytes = pivot_condition(svd_rows, "solution_bytes", k=svd_ks[0]).values
    svd = _pivot_all(svd_rows, "solution_nats", svd_ks, reference, draws=False)
    random = _pivot_all(random_rows, "solution_nats", random_ks, reference, draws=True)
    arrays = [a.values for a in [*svd.values(), *random.values()]] + [n_bytes]
    if any(not np.all(np.isfinite(a)) for a in arrays):
        analysis["notes"].append(f"bits_per_byte inputs have missing values at {keys}: skipped")
        return
    options = {"rng": context.rng, "level": context.level, "n_boot": context.n_boot}
    rows = []
    if _usable(unablated, "solution_nats"):
        plain = pivot_condition(unablated, "solution_nats")
        check_aligned(reference, plain, f"unablated ({group.config_label})")
        if np.all(np.isfinite(plain.values)):
            rows.append(_level_row("none", None, bits_per_byte(plain.values, n_bytes, **options)))
    rows += [_level_row("svd_rank_k", k, bits_per_byte(a.values, n_bytes, **options))
             for k, a in svd.items()]
    rows += [_level_row("random_rank_k", k, random_mean(a.values / LN2, denominator=n_bytes,
                                                        **options))
             for k, a in random.items()]
    analysis["levels"].append({**keys, "outcome": "bits_per_byte", "unit": "bits per byte",
                               "rows": rows})
    common = sorted(set(svd_ks) & set(random_ks))
    if not common:
        return
    family = group.family("q2", keys["site"], "bits_per_byte")
    claims = []
    for k in common:
        result = bits_per_byte_contrast(svd[k].values, random[k].values, n_bytes, **options)
        claims.append(interval_claim(result, claim=f"SVD rank-{k} bits per byte differs from "
                                     f"random rank-{k}", family=family, unit="bits per byte")
                      | {"k": k, "p_tost_e1": None, "p_tost_e3": None, "equivalent_e3": None})
    analysis["q2"].append({**keys, "outcome": "bits_per_byte", "unit": "bits per byte",
                           "n_seeds": len(reference.seeds), "seeds": list(reference.seeds),
                           "n_items": len(reference.item_ids),
                           "n_draws": len(random[common[0]].draws),
                           "margin": None, "claims": claims,
                           "notes": [] if len(reference.seeds) >= 2 else [ONE_SEED_NOTE]})
