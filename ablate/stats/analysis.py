"""Run every applicable test family on one run's per-item records and return a JSON dict.

Groups are (config_label, task, mode, n_iterations) and, for ablations, site. Q1 runs
where >= 2 svd_rank_k ranks exist, Q2 where random_rank_k draws share a k with them, Q3 on
the unablated rows' erank_per_iter, head comparisons when a (task, mode, T) has > 1
config_label, Q4 where depth annotations are known, Q5 where matrix-CODI study records
carry latent_erank (and, for the number of latents, an n_latents = 0 baseline). With one
seed everything is described and E1 ("these checkpoints") is tested, but nothing is
inferred across seeds.

    >>> analysis = analyze_records(records, rng=np.random.default_rng(0))  # doctest: +SKIP
    >>> tables = tables_from_analysis(analysis)  # doctest: +SKIP

Schema (every float rounded to 10 significant digits; NaN/inf become null):
    schema            "ablate.stats/1"
    settings          {level, n_boot, alpha, tost_margin (pp on the accuracy outcome or null)}
    notes             run-wide notes (e.g. families skipped and why)
    levels[]          per (group, site, outcome): mean of each condition, for figures
      config_label, task, mode, n_iterations, site, outcome, unit   group keys and units
      rows[]          {condition ("none"|"svd_rank_k"|"random_rank_k"), k (null if none),
                       estimate, e1 [lo, hi], e3 [lo, hi], per_seed [..]}
    q1[]              trend over k per (group, site, outcome in correct, answer_loglik)
      <group keys>, outcome, unit, n_seeds, seeds, n_items, ks
      claims[]        claim dicts (below): the slope per halving of k (E1 = clustered OLS),
                      then unablated minus the largest k when unablated rows exist
      odds_ratio_per_doubling   {estimate, interval, p, method, note} GEE (0/1 outcome) or null
      page            {statistic, p, method} Page's L on the seeds x k table, or null
      adjacent[]      {k_low, k_high, estimate, e1, e3, p_one_e1, p_one_e3}: acc(k_high) -
                      acc(k_low), one-sided p for "> 0"
      monotone        {e1: bool, e3: bool|null, alpha, rule} intersection-union verdicts
      per_seed_means  (n_seeds x n_ks) scaled outcome means
      notes[]
    q2[]              SVD minus random per (group, site, outcome in correct, answer_loglik,
                      bits_per_byte)
      <group keys>, outcome, unit, n_seeds, seeds, n_items, n_draws, margin (null unless
      accuracy with a margin)
      claims[]        one claim per k, each with k, p_tost_e1, p_tost_e3, equivalent_e3
      notes[]
    q3[]              effective rank over iterations per (config_label, task, mode, T)
      <group keys without site>, n_seeds, seeds, n_items (sequences), iterations (used),
      mean_trajectory [M(0)..M(T)], per_seed_trajectory (n_seeds x (T+1))
      claims[]        slope per iteration (primary), iteration T minus `start` (secondary)
      notes[]
    q3_heads[]        head A vs head B per (task, mode, T)
      task, mode, n_iterations, head_a, head_b, design ("paired": same checkpoints,
      heads swapped at evaluation | "unpaired": separate checkpoints, unit = checkpoint)
      claims[]        slope(A) - slope(B) (paired: two-way; unpaired: Welch interval as e3)
      welch           {t, df, p, p_permutation, permutation_method, warning} (unpaired) or null
      direction_flip  {p_a_positive, p_b_negative, p_b_positive, p_a_negative, p, flips,
                       method}: slopes of opposite sign, either way round (Bonferroni x2)
      notes[]
    q4[]              depth association per (config_label, task, mode, T), unablated erank
                      at the final iteration M(T)
      <group keys without site>, n_items, n_excluded_unknown_depth, length_adjusted
      claims[]        erank per unit depth adjusted for log n_tokens (E1 = clustered OLS):
                      depth_annotations (primary), depth_lines (secondary, own family)
      kendall_tau_b, partial_spearman   {estimate, interval, p, method}
      depth_agreement {n_items, kendall_tau_b, spearman, share_equal} annotations vs lines
      erank_length_spearman             Spearman of seed-mean erank with n_tokens
      notes[]
    q5[]              matrix-CODI latent thoughts per (config_label, task, mode, T) whose
                      unablated rows carry non-empty latent_erank lists (one group per number
                      of latents; latents numbered from 1: Z_1 is the first thought)
      <group keys without site>, n_latents, n_seeds, seeds, n_items, latents [1..n],
      mean_profile [erank of Z_1..Z_n], per_seed_profile (n_seeds x n_latents)
      claims[]        each with aspect ("profile" | "depth"): slope per latent step
                      (primary, family q5|..), Z_n minus Z_1 (secondary, q5-change|..), both
                      need >= 2 latents; mean latent erank per unit depth adjusted for log
                      n_tokens (E1 = clustered OLS): depth_annotations (primary,
                      q5-depth|..), depth_lines (secondary, q5-depth-lines|..)
      depth           null when depth is unknown, else {n_items, n_excluded_unknown_depth,
                      length_adjusted, kendall_tau_b, partial_spearman, depth_agreement
                      (as in q4), erank_length_spearman, per_latent}
        per_latent    exploratory (BH) length-adjusted depth slope of each latent's erank:
                      {label, latents, estimate[], e1[], e3[], p[], p_method ("p_e3" with
                      >= 2 seeds, else "p_e1"), p_bh[], unit}
      notes[]
    q5_latents[]      number of latents: L_n minus the no-thought baseline L_0 on unablated
                      rows, paired per (train_seed, item), per base model (config_label
                      without its "-L<n>" suffix, task, mode, T) and outcome (correct in pp,
                      answer_loglik in nats); absent without an L_0 group
      config_label (the base label), task, mode, n_iterations, outcome, unit,
      reference_n_latents (0), n_latents [..] (all, 0 first), n_seeds, seeds, n_items
      means[]         {n_latents, estimate, per_seed} scaled outcome mean of each L_n
      claims[]        one per n > 0 with n_latents; family q5-latents|base|..|outcome
      notes[]
    scans[]           exploratory (Benjamini-Hochberg) over sites of one group
      <group keys without site>, outcome, test (what was scanned), label "exploratory",
      sites [..], p_e3 [..] per site, p_bh [..] BH-adjusted
    power
      mde_table[]     {n_seeds, mde_in_seed_sd}: 80% power, two-sided alpha 0.05
      variance_components[]  {<group keys>, quantity, seed, problem, residual, per_seed_sd,
                       n_seeds, n_items, mde_in_seed_sd, mde_in_units}
      recommendation  text
Claim dict (one tested statement, two-sided tests):
    claim             the statement, e.g. "correct changes when k is halved"
    family            Holm family id, e.g. "q1|multiprobe|gsm8k|teacher_forced|T=8|head_input|
                      correct" (question|head|task|mode|T|site|outcome)
    role              "primary" | "secondary"
    unit              e.g. "pp per halving of k" (negative: accuracy falls as k halves)
    estimate          mean over seeds of the per-seed statistic
    e1, p_e1          E1 interval [lo, hi] and p (these checkpoints, problems random)
    e1_method         "paired problem bootstrap" or the model that gives E1 (clustered OLS)
    e1_bootstrap, p_e1_bootstrap   the problem-bootstrap E1 in every case
    e3, p_e3, df_e3, se_e3         two-way interval (new seeds and problems), t reference;
                      null with one seed (see notes)
    per_seed          per-seed statistics in the order of the entry's ``seeds``
                      (unpaired heads: head A's checkpoints, then head B's)
    n_seeds, n_items  seeds (checkpoints) and problems (sequences) used
    p_holm_e1, p_holm_e3           Holm-adjusted within ``family``; null when not testable
    verdict           a key of ablate.stats.claims.VERDICTS (across_seeds, ...)
    notes[]           why something is missing or descriptive only
    k                 (Q1 unablated contrast, Q2) the rank k
    aspect            (Q5) "profile" (over latent steps) or "depth"
    n_latents         (Q5 number of latents) the n of the contrast L_n minus L_0
    p_tost_e1, p_tost_e3, equivalent_e3   (Q2) equivalence within the margin, or null
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from ablate.errors import AblateError
from ablate.stats.ablation_analysis import analyse_site
from ablate.stats.claims import AnalysisContext, GroupKey, apply_holm, json_ready
from ablate.stats.erank_analysis import analyse_depth, analyse_heads, analyse_iterations
from ablate.stats.latent_analysis import analyse_latent_counts, analyse_latents
from ablate.stats.multiplicity import benjamini_hochberg
from ablate.stats.power import mde_table
from ablate.stats.tables import tables_from_analysis

__all__ = ["analyze_records", "tables_from_analysis"]

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("config_label", "task", "mode", "n_iterations", "intervention", "site",
                    "k", "draw", "train_seed", "item_id")
ABLATIONS = ("svd_rank_k", "random_rank_k")
# Families whose claims share the Holm step (each claim's ``family`` is its Holm family).
CLAIM_FAMILIES = ("q1", "q2", "q3", "q3_heads", "q4", "q5", "q5_latents")


def analyze_records(records: pd.DataFrame, *, rng: np.random.Generator, level: float = 0.95,
                    n_boot: int = 2000, tost_margin: float | None = None,
                    alpha: float = 0.05) -> dict[str, Any]:
    """Every applicable family on a run's per-item records (schema in docs/architecture.md);
    returns the JSON-serialisable dict documented in this module's docstring."""
    missing = [c for c in REQUIRED_COLUMNS if c not in records.columns]
    if missing:
        raise AblateError(f"records lack column(s) {', '.join(missing)}; they must follow the "
                          "per-item record schema written by ablate.store")
    if records.empty:
        raise AblateError("records are empty: run the experiment before analysing it")
    settings = {"level": level, "n_boot": n_boot, "alpha": alpha, "tost_margin": tost_margin}
    analysis: dict[str, Any] = {"schema": "ablate.stats/1", "settings": settings, "notes": [],
                                "levels": [], "q1": [], "q2": [], "q3": [], "q3_heads": [],
                                "q4": [], "q5": [], "q5_latents": [], "scans": [],
                                "power": {"variance_components": []}}
    context = AnalysisContext(rng=rng, level=level, n_boot=n_boot, alpha=alpha,
                              tost_margin=tost_margin)
    base_columns = ["config_label", "task", "mode", "n_iterations"]
    bases = records[base_columns].drop_duplicates().sort_values(base_columns)
    for base in bases.itertuples(index=False):
        group = GroupKey(str(base.config_label), str(base.task), str(base.mode),
                         int(base.n_iterations))
        rows = records[(records["config_label"] == group.config_label)
                       & (records["task"] == group.task) & (records["mode"] == group.mode)
                       & (records["n_iterations"] == group.n_iterations)]
        unablated = rows[rows["intervention"] == "none"]
        ablated = rows[rows["intervention"].isin(ABLATIONS)]
        sites = sorted(set(ablated["site"].astype(str)))
        for site in sites:
            analyse_site(analysis, group, site, ablated[ablated["site"].astype(str) == site],
                         unablated, context)
        if len(sites) > 1:
            _scan_sites(analysis, group, sites)
        if not unablated.empty:
            analyse_iterations(analysis, group, unablated, context)
            analyse_depth(analysis, group, unablated, context)
            analyse_latents(analysis, group, unablated, context)
        logger.info("analysed %s: %d site(s)", group, len(sites))
    analyse_heads(analysis, records, context)
    analyse_latent_counts(analysis, records, context)
    claims = [claim for family in CLAIM_FAMILIES
              for entry in analysis[family] for claim in entry["claims"]]
    apply_holm(claims, alpha=alpha)
    analysis["power"]["mde_table"] = mde_table().to_dict(orient="records")
    analysis["power"]["recommendation"] = (
        "use >= 5 seeds for across-seed (E3) claims and >= 4 checkpoints per arm for "
        "training-time comparisons")
    if not any(analysis[f] for f in ("q1", "q2", "q3", "q4", "q5", "q5_latents")):
        analysis["notes"].append("no family applied: records have no svd_rank_k ranks, "
                                 "random draws, erank_per_iter, depth or latent_erank")
    return json_ready(analysis)


def _scan_sites(analysis: dict[str, Any], group: GroupKey, sites: list[str]) -> None:
    """Exploratory BH over the sites of one group (Q1 slope on accuracy, E3 p)."""
    found = {entry["site"]: entry["claims"][0]["p_e3"] for entry in analysis["q1"]
             if entry["outcome"] == "correct" and entry["site"] in sites
             and GroupKey.of(entry) == group}
    if len(found) < 2:
        return
    ordered = sorted(found)
    p_values = [np.nan if found[s] is None else found[s] for s in ordered]
    analysis["scans"].append({**group.as_dict(), "outcome": "correct",
                              "test": "Q1 slope per halving of k (E3)", "label": "exploratory",
                              "sites": ordered, "p_e3": p_values,
                              "p_bh": benjamini_hochberg(p_values).tolist()})
