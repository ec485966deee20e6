"""Tables of an analysis from each registered question: tidy tables for CSV
(``Question.tables``, plus one long table of every claim's per-seed values; intervals
become ``<name>_low``/``<name>_high`` columns, notes are joined by "; "), and the compact
views people read (``Question.views``).

    >>> tables = tables_from_analysis(analysis)  # doctest: +SKIP
    >>> tables["q2"][["k", "estimate", "e3_low", "e3_high", "p_holm_e3"]]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ablate.questions.blocks import TableView
from ablate.questions.registry import QUESTIONS

if TYPE_CHECKING:
    from ablate.questions.base import Question


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Scalars as they are, [low, high] pairs as two columns, nested dicts with a prefix;
    other lists (per-seed values, trajectories) are left to their own tables."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if key == "notes":
            row[name] = "; ".join(value)
        elif isinstance(value, Mapping):
            row.update(flatten(value, prefix=f"{name}_"))
        elif isinstance(value, list):
            is_pair = len(value) == 2 and all(v is None or isinstance(v, (int, float))
                                              for v in value)
            if is_pair and key in {"e1", "e3", "e1_bootstrap", "interval"}:
                row[f"{name}_low"], row[f"{name}_high"] = value
        else:
            row[name] = value
    return row


def entry_keys(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's own columns (what it describes), without its claims and sub-lists."""
    skip = {"claims", "adjacent", "rows", "notes"}
    flat = flatten({k: v for k, v in entry.items() if k not in skip})
    flat["entry_notes"] = "; ".join(entry.get("notes", []))
    return flat


def claim_rows(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per claim, with the columns of its entry."""
    return [{**entry_keys(entry), **flatten(claim)} for entry in entries
            for claim in entry["claims"]]


def per_seed_rows(analysis: Mapping[str, Any], outputs: Sequence[str]) -> list[dict[str, Any]]:
    """Long table: one row per claim and seed (unpaired heads: head A's, then head B's)."""
    rows = []
    for output in outputs:
        for entry in analysis.get(output, []):
            keys = entry_keys(entry)
            for claim in entry["claims"]:
                seeds = entry.get("seeds") or list(range(len(claim["per_seed"])))
                for index, value in enumerate(claim["per_seed"]):
                    seed = seeds[index] if index < len(seeds) else index
                    rows.append({"question": output, **keys, "claim": claim["claim"],
                                 "seed": seed, "value": value})
    return rows


def tables_from_analysis(analysis: Mapping[str, Any],
                         questions: Sequence[Question] | None = None) -> dict[str, pd.DataFrame]:
    """Every question's tables in registry order (q1, q1_adjacent, q2, ..., levels, scans,
    power_mde, variance_components), then per_seed."""
    if questions is None:
        questions = QUESTIONS
    tables: dict[str, list[dict[str, Any]]] = {}
    for question in questions:
        tables.update(question.tables(analysis))
    outputs = [key for question in questions for key in question.claim_outputs]
    tables["per_seed"] = per_seed_rows(analysis, outputs)
    return {name: pd.DataFrame(rows) for name, rows in tables.items()}


def table_views(analysis: Mapping[str, Any],
                questions: Sequence[Question] | None = None) -> list[TableView]:
    """The compact claim tables `ablate stats` prints and the report shows (the full
    tables go to CSV), in registry order, each with the footnotes its p-value marks need;
    empty tables are left out."""
    from ablate.questions.words import footnoted

    if questions is None:
        questions = QUESTIONS
    return [footnoted(view) for question in questions for view in question.views(analysis)
            if view.rows]
