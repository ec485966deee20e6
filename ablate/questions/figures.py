"""What the questions' figures share: one figure per scope (task, mode, T and, for
ablations, site) with one panel column per head, the interval legend of every caption, and
the records behind a JSON entry (the analysis keeps only summaries).

    >>> cells = by_scope(analysis["q1"], site=True)  # doctest: +SKIP
    >>> grid(cells[scope], ("correct", "answer_loglik"), lambda entry: entry)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from ablate.stats.frames import select

GROUP_KEYS = ("config_label", "task", "mode", "n_iterations")
INTERVALS = ("Thick bars: E1, the {level:.0%} interval for these checkpoints (problems random, "
             "seeds fixed); thin capped bars: E3, for a new training run on problems like "
             "these (seeds and problems random).")


# How the figures write bootstrap p-values (ablate.plots.style.format_p).
P_MARKS = ("Bootstrap p-values: '< x' is a bound (no replicate crossed zero; also any p below "
           "0.001), '≈ x' one below 0.01 from fewer than 10,000 replicates, too imprecise to "
           "report.")


def intervals_caption(level: float) -> str:
    return INTERVALS.format(level=level)


def scope_of(entry: Mapping[str, Any], *, site: bool, arm: bool = False) -> tuple[Any, ...]:
    """(task, mode, T), then the site, then the intervention (and its control) it names."""
    keys = (entry["task"], entry["mode"], entry["n_iterations"])
    keys = (*keys, entry["site"]) if site else keys
    if arm:
        keys = (*keys, arm_text(entry))
    return keys


def arm_text(entry: Mapping[str, Any]) -> str:
    """"svd_rank_k", or "svd_rank_k vs random_rank_k" for an entry with a control."""
    text = str(entry.get("intervention") or "")
    return text + (f" vs {entry['control']}" if entry.get("control") else "")


def scope_text(scope: Sequence[Any]) -> str:
    """"gsm8k teacher_forced T=8 at head_input, svd_rank_k"."""
    text = f"{scope[0]} {scope[1]} T={scope[2]}"
    text += f" at {scope[3]}" if len(scope) > 3 else ""
    return text + (f", {scope[4]}" if len(scope) > 4 and scope[4] else "")


def by_scope(entries: Sequence[Mapping[str, Any]], *, site: bool, arm: bool = False
             ) -> dict[tuple[Any, ...], dict[tuple[str, str], Mapping[str, Any]]]:
    """scope -> (config_label, outcome) -> entry, scopes sorted; ``arm`` makes each
    intervention (and control) a scope of its own."""
    scopes: dict[tuple[Any, ...], dict[tuple[str, str], Mapping[str, Any]]] = {}
    for entry in entries:
        key = (str(entry["config_label"]), str(entry.get("outcome", "")))
        scopes.setdefault(scope_of(entry, site=site, arm=arm), {})[key] = entry
    return dict(sorted(scopes.items(), key=lambda item: tuple(map(str, item[0]))))


def grid(cells: Mapping[tuple[str, str], Mapping[str, Any]], outcomes: Sequence[str],
         make: Callable[[Mapping[str, Any]], Any]) -> list[list[Any]]:
    """Panels: one row per outcome present, one column per head (None where missing)."""
    heads = sorted({head for head, _ in cells})
    return [[make(cells[(head, outcome)]) if (head, outcome) in cells else None
             for head in heads] for outcome in outcomes if any(o == outcome for _, o in cells)]


def group_rows(records: pd.DataFrame, entry: Mapping[str, Any], **selection: Any
               ) -> pd.DataFrame:
    """Records of the entry's group (config_label, task, mode, T), further selected."""
    return select(records, **{key: entry[key] for key in GROUP_KEYS}, **selection)
