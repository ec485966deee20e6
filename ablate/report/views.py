"""Compact views of an analysis for people: the claim tables `ablate stats` prints and the
report shows (the full tables go to CSV), and the number formats both use.

    >>> views = table_views(analysis)  # doctest: +SKIP
    >>> views[0].title, views[0].columns[:3]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ablate.stats.claims import VERDICTS


@dataclass(frozen=True)
class TableView:
    """A titled table of formatted strings."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


def number(value: Any, *, signed: bool = False) -> str:
    """A number with about three significant digits; "n/a" for null."""
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return "n/a"
    x = float(value)
    sign = "+" if signed and x > 0 else ""
    size = abs(x)
    if size == 0:
        return "0"
    if size >= 1000:
        return f"{sign}{x:,.0f}"
    if size >= 10:
        return f"{sign}{x:.1f}"
    if size >= 1:
        return f"{sign}{x:.2f}"
    if size >= 0.01:
        return f"{sign}{x:.3f}"
    return f"{sign}{x:.2e}"


def p_value(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def pair(values: Sequence[Any] | None) -> str:
    """"[low, high]" or "n/a"."""
    if not values or any(v is None for v in values):
        return "n/a"
    return f"[{number(values[0])}, {number(values[1])}]"


def head_scope(entry: Mapping[str, Any], *, site: bool = True) -> str:
    """"multiprobe, gsm8k teacher_forced T=8 at head_input"."""
    text = (f"{entry['config_label']}, {entry['task']} {entry['mode']} "
            f"T={entry['n_iterations']}")
    return text + (f" at {entry['site']}" if site and entry.get("site") else "")


SHORT_VERDICTS = {"across_seeds": "across seeds",
                  "these_checkpoints_only": "these checkpoints only",
                  "not_significant": "not significant",
                  "one_seed_these_checkpoints": "one seed: this checkpoint only",
                  "one_seed_not_significant": "one seed: not significant"}


def verdict_text(key: str | None) -> str:
    return VERDICTS.get(key or "", key or "n/a")


def short_verdict(key: str | None) -> str:
    return SHORT_VERDICTS.get(key or "", key or "n/a")


def _claim_cells(claim: Mapping[str, Any]) -> tuple[str, ...]:
    return (number(claim.get("estimate"), signed=True), pair(claim.get("e1")),
            p_value(claim.get("p_holm_e1")), pair(claim.get("e3")),
            p_value(claim.get("p_holm_e3")), short_verdict(claim.get("verdict")))


CLAIM_COLUMNS = ("estimate", "E1 interval", "Holm p E1", "E3 interval", "Holm p E3", "verdict")


def table_views(analysis: Mapping[str, Any]) -> list[TableView]:
    """The headline tables, in the order of the questions; empty families are left out."""
    views: list[TableView] = []
    q1 = [(head_scope(e), c["claim"], c["unit"], *_claim_cells(c))
          for e in analysis.get("q1", []) for c in e["claims"]]
    views.append(TableView("q1", "Q1: change per halving of k, and unablated vs the largest k",
                           ("group", "claim", "unit", *CLAIM_COLUMNS), tuple(q1)))
    adjacent = [(head_scope(e), e["outcome"], f"k={a['k_high']} minus k={a['k_low']}",
                 number(a["estimate"], signed=True), pair(a["e1"]), p_value(a["p_one_e1"]),
                 pair(a["e3"]), p_value(a["p_one_e3"]), _monotone(e["monotone"]))
                for e in analysis.get("q1", []) for a in e["adjacent"]]
    views.append(TableView("q1_adjacent", "Q1: adjacent contrasts (one-sided p for > 0)",
                           ("group", "outcome", "contrast", "estimate", "E1 interval",
                            "p E1", "E3 interval", "p E3", "monotone"), tuple(adjacent)))
    q2 = [(head_scope(e), e["outcome"], str(c["k"]), *_claim_cells(c)[:5],
           p_value(c.get("p_tost_e3")), short_verdict(c.get("verdict")))
          for e in analysis.get("q2", []) for c in e["claims"]]
    views.append(TableView("q2", "Q2: SVD minus random rank-k, per k",
                           ("group", "outcome", "k", *CLAIM_COLUMNS[:5], "TOST p E3",
                            "verdict"), tuple(q2)))
    q3 = [(head_scope(e, site=False), c["claim"], c["unit"], *_claim_cells(c))
          for e in analysis.get("q3", []) for c in e["claims"]]
    views.append(TableView("q3", "Q3: effective rank over iterations",
                           ("group", "claim", "unit", *CLAIM_COLUMNS), tuple(q3)))
    heads = [(f"{e['task']} {e['mode']} T={e['n_iterations']}", c["claim"], e["design"],
              *_claim_cells(c), p_value((e.get("direction_flip") or {}).get("p")))
             for e in analysis.get("q3_heads", []) for c in e["claims"]]
    views.append(TableView("q3_heads", "Q3: head differences and the direction flip",
                           ("setting", "claim", "design", *CLAIM_COLUMNS, "flip p"),
                           tuple(heads)))
    q4 = [(head_scope(e, site=False), c["claim"], c["role"], *_claim_cells(c))
          for e in analysis.get("q4", []) for c in e["claims"]]
    views.append(TableView("q4", "Q4: effective rank and depth, adjusted for length",
                           ("group", "claim", "role", *CLAIM_COLUMNS), tuple(q4)))
    q5 = [(head_scope(e, site=False), c["claim"], c["unit"], c["role"], *_claim_cells(c))
          for e in analysis.get("q5", []) for c in e["claims"]]
    views.append(TableView("q5", "Q5: effective rank of the latent thoughts (matrix-CODI)",
                           ("group", "claim", "unit", "role", *CLAIM_COLUMNS), tuple(q5)))
    latents = [(head_scope(e, site=False), e["outcome"], f"L{c['n_latents']} minus L0",
                e["unit"], *_claim_cells(c))
               for e in analysis.get("q5_latents", []) for c in e["claims"]]
    views.append(TableView("q5_latents", "Q5: number of latent thoughts, L_n minus L_0",
                           ("model", "outcome", "contrast", "unit", *CLAIM_COLUMNS),
                           tuple(latents)))
    scans = [(head_scope(e, site=False), e["test"], site, p_value(p), p_value(p_bh))
             for e in analysis.get("scans", [])
             for site, p, p_bh in zip(e["sites"], e["p_e3"], e["p_bh"], strict=True)]
    views.append(TableView("scans", "Exploratory scan over sites (Benjamini-Hochberg)",
                           ("group", "test", "site", "p E3", "p BH"), tuple(scans)))
    power = analysis.get("power", {})
    components = [(head_scope(c), c["quantity"], str(c["n_seeds"]), str(c["n_items"]),
                   number(c["seed"]), number(c["problem"]), number(c["residual"]),
                   number(c["per_seed_sd"]), number(c["mde_in_seed_sd"]),
                   number(c["mde_in_units"]))
                  for c in power.get("variance_components", [])]
    views.append(TableView("variance_components",
                           "Variance components and the minimum detectable effect (80% power)",
                           ("group", "quantity", "seeds", "items", "seed var", "problem var",
                            "residual var", "per-seed SD", "MDE (seed SDs)", "MDE (units)"),
                           tuple(components)))
    mde = [(str(row["n_seeds"]), number(row["mde_in_seed_sd"]))
           for row in power.get("mde_table", [])]
    views.append(TableView("power_mde", "Minimum detectable effect by number of seeds",
                           ("seeds", "MDE (seed-to-seed SDs)"), tuple(mde)))
    return [view for view in views if view.rows]


def _monotone(monotone: Mapping[str, Any]) -> str:
    e3 = monotone.get("e3")
    return f"E1 {'yes' if monotone.get('e1') else 'no'}, E3 " + (
        "n/a" if e3 is None else ("yes" if e3 else "no"))
