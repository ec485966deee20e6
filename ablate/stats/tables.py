"""Tidy tables from an analysis dict (ablate.stats.analysis), one per family, for printing
and CSV: intervals become ``<name>_low``/``<name>_high`` columns, notes are joined by "; ".

    >>> tables = tables_from_analysis(analysis)  # doctest: +SKIP
    >>> tables["q2"][["k", "estimate", "e3_low", "e3_high", "p_holm_e3"]]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

CLAIM_FAMILIES = ("q1", "q2", "q3", "q3_heads", "q4", "q5", "q5_latents")


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars as they are, [low, high] pairs as two columns, nested dicts with a prefix;
    other lists (per-seed values, trajectories) are left to their own tables."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if key == "notes":
            row[name] = "; ".join(value)
        elif isinstance(value, Mapping):
            row.update(_flatten(value, prefix=f"{name}_"))
        elif isinstance(value, list):
            is_pair = len(value) == 2 and all(v is None or isinstance(v, (int, float))
                                              for v in value)
            if is_pair and key in {"e1", "e3", "e1_bootstrap", "interval"}:
                row[f"{name}_low"], row[f"{name}_high"] = value
        else:
            row[name] = value
    return row


def _entry_keys(entry: Mapping[str, Any]) -> dict[str, Any]:
    skip = {"claims", "adjacent", "rows", "notes"}
    keys = {k: v for k, v in entry.items() if k not in skip}
    flat = _flatten(keys)
    flat["entry_notes"] = "; ".join(entry.get("notes", []))
    return flat


def tables_from_analysis(analysis: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """Tables: q1, q1_adjacent, q2, q3, q3_heads, q4 (one row per claim or contrast, with
    the group keys), per_seed (long: claim x seed), levels, scans, power_mde,
    variance_components."""
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in CLAIM_FAMILIES}
    tables.update({"q1_adjacent": [], "per_seed": [], "levels": [], "scans": []})
    for family in CLAIM_FAMILIES:
        for entry in analysis.get(family, []):
            keys = _entry_keys(entry)
            for claim in entry["claims"]:
                tables[family].append({**keys, **_flatten(claim)})
                seeds = entry.get("seeds") or list(range(len(claim["per_seed"])))
                for index, value in enumerate(claim["per_seed"]):
                    seed = seeds[index] if index < len(seeds) else index
                    tables["per_seed"].append({"question": family, **keys,
                                               "claim": claim["claim"], "seed": seed,
                                               "value": value})
            for contrast in entry.get("adjacent", []):
                tables["q1_adjacent"].append({**keys, **_flatten(contrast)})
    for entry in analysis.get("levels", []):
        keys = _entry_keys(entry)
        for row in entry["rows"]:
            tables["levels"].append({**keys, **_flatten(row)})
    for entry in analysis.get("scans", []):
        for site, p, p_bh in zip(entry["sites"], entry["p_e3"], entry["p_bh"], strict=True):
            base = {k: v for k, v in entry.items() if k not in {"sites", "p_e3", "p_bh"}}
            tables["scans"].append({**base, "site": site, "p_e3": p, "p_bh": p_bh})
    frames = {name: pd.DataFrame(rows) for name, rows in tables.items()}
    power = analysis.get("power", {})
    frames["power_mde"] = pd.DataFrame(power.get("mde_table", []))
    frames["variance_components"] = pd.DataFrame(power.get("variance_components", []))
    return frames
