"""Adapters from per-item records (one row per job x item, see docs/helper-brief.md) to the
(n_seeds, n_items) arrays the statistics take, aligned on item_id and sorted by seed.

Selections filter on config_label, task, mode, n_iterations, intervention, site, k and
draw; ``None`` selects NA (e.g. ``k=None`` for unablated rows). The seed axis is
``train_seed``; rows repeated for a (train_seed, item_id) pair are an error, since they
would silently double-weight items.

    >>> svd4 = pivot_condition(records, "correct", intervention="svd_rank_k", k=4)  # doctest: +SKIP
    >>> svd4.values.shape  # (n_seeds, n_items)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ablate.errors import AblateError, unknown_name_error

SELECTION_KEYS = ("config_label", "task", "mode", "n_iterations", "intervention", "site", "k",
                  "draw")


@dataclass(frozen=True)
class SeedItemArray:
    """values (n_seeds, n_items[, n_iters]) with the seeds and item ids of its axes."""

    values: np.ndarray
    seeds: tuple[int, ...]
    item_ids: tuple[str, ...]


@dataclass(frozen=True)
class DrawArray:
    """values (n_seeds, n_draws, n_items) of a random control, with its axis labels."""

    values: np.ndarray
    seeds: tuple[int, ...]
    draws: tuple[int, ...]
    item_ids: tuple[str, ...]


def _describe(selection: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in selection.items()) or "all rows"


def select(records: pd.DataFrame, **selection: Any) -> pd.DataFrame:
    """Rows matching every selection key (None matches NA)."""
    mask = pd.Series(True, index=records.index)
    for key, value in selection.items():
        if key not in SELECTION_KEYS:
            raise unknown_name_error("selection key", key, SELECTION_KEYS)
        if key not in records.columns:
            raise AblateError(f"records have no column '{key}'; columns are "
                              f"{', '.join(map(str, records.columns))}")
        column = records[key]
        mask &= column.isna() if value is None else (column == value).fillna(False).astype(bool)
    return records[mask]


def _require(rows: pd.DataFrame, columns: tuple[str, ...], selection: dict[str, Any]) -> None:
    missing = [c for c in columns if c not in rows.columns]
    if missing:
        raise AblateError(f"records lack column(s) {', '.join(missing)} needed for "
                          f"{_describe(selection)}; regenerate them with the current store schema")
    if rows.empty:
        raise AblateError(f"no records match {_describe(selection)}; check the selection "
                          "against the run's conditions")


def _check_unique(rows: pd.DataFrame, keys: list[str], selection: dict[str, Any]) -> None:
    duplicated = rows.duplicated(subset=keys)
    if duplicated.any():
        example = rows.loc[duplicated, keys].iloc[0].to_dict()
        raise AblateError(f"{int(duplicated.sum())} repeated rows for {example} under "
                          f"{_describe(selection)}; narrow the selection (e.g. by site, k, "
                          "draw or eval_seed) so each seed has one row per item")


def _item_ids(rows: pd.DataFrame, by: list[str], selection: dict[str, Any]) -> tuple[str, ...]:
    """The shared sorted item ids of every group in ``by``; error if the sets differ."""
    item_sets = rows.groupby(by, sort=True)["item_id"].agg(lambda ids: frozenset(map(str, ids)))
    reference = item_sets.iloc[0]
    for group, items in item_sets.items():
        if items != reference:
            missing, extra = len(reference - items), len(items - reference)
            raise AblateError(f"items differ across seeds for {_describe(selection)}: "
                              f"{dict(zip(by, np.atleast_1d(group), strict=True))} lacks "
                              f"{missing} and adds {extra} item(s) relative to "
                              f"{dict(zip(by, np.atleast_1d(item_sets.index[0]), strict=True))};"
                              " re-run the missing jobs or select a complete subset")
    return tuple(sorted(reference))


def _as_float(column: pd.Series | pd.DataFrame, value: str) -> np.ndarray:
    try:
        return column.astype(object).to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise AblateError(f"column '{value}' is not numeric ({error}); pick a numeric "
                          "metric such as correct, answer_loglik or bits_per_byte") from error


def pivot_condition(records: pd.DataFrame, value: str = "correct",
                    **selection: Any) -> SeedItemArray:
    """One condition as values (n_seeds, n_items): rows train_seed, columns item_id."""
    rows = select(records, **selection)
    _require(rows, ("train_seed", "item_id", value), selection)
    _check_unique(rows, ["train_seed", "item_id"], selection)
    item_ids = _item_ids(rows, ["train_seed"], selection)
    table = rows.assign(item_id=rows["item_id"].astype(str)).pivot(
        index="train_seed", columns="item_id", values=value)
    table = table.sort_index().reindex(columns=list(item_ids))
    return SeedItemArray(values=_as_float(table, value), seeds=tuple(int(s) for s in table.index),
                         item_ids=item_ids)


def pivot_draws(records: pd.DataFrame, value: str = "correct", **selection: Any) -> DrawArray:
    """Random-control draws as values (n_seeds, n_draws, n_items); every seed must have the
    same draws and every (seed, draw) the same items."""
    rows = select(records, **selection)
    _require(rows, ("train_seed", "draw", "item_id", value), selection)
    if rows["draw"].isna().any():
        raise AblateError(f"rows under {_describe(selection)} have no draw index; select "
                          "intervention='random_rank_k' (or another drawn control)")
    _check_unique(rows, ["train_seed", "draw", "item_id"], selection)
    draw_sets = rows.groupby("train_seed")["draw"].agg(lambda d: tuple(sorted(set(map(int, d)))))
    if draw_sets.nunique() != 1:
        raise AblateError(f"seeds have different draws under {_describe(selection)}: "
                          f"{draw_sets.to_dict()}; run the same draws for every seed")
    item_ids = _item_ids(rows, ["train_seed", "draw"], selection)
    seeds = tuple(int(s) for s in sorted(draw_sets.index))
    draws = draw_sets.iloc[0]
    frame = rows.assign(item_id=rows["item_id"].astype(str),
                        train_seed=rows["train_seed"].astype(int), draw=rows["draw"].astype(int))
    full = pd.MultiIndex.from_product([seeds, draws, list(item_ids)],
                                      names=["train_seed", "draw", "item_id"])
    ordered = frame.set_index(["train_seed", "draw", "item_id"])[value].reindex(full)
    values = _as_float(ordered, value).reshape(len(seeds), len(draws), len(item_ids))
    return DrawArray(values=values, seeds=seeds, draws=draws, item_ids=item_ids)


def pivot_erank(records: pd.DataFrame, column: str = "erank_per_iter",
                **selection: Any) -> SeedItemArray:
    """Per-iteration effective rank as values (n_seeds, n_items, n_iters); n_iters = T + 1
    (M(0) .. M(T)) and must be the same for every row."""
    rows = select(records, **selection)
    _require(rows, ("train_seed", "item_id", column), selection)
    _check_unique(rows, ["train_seed", "item_id"], selection)
    item_ids = _item_ids(rows, ["train_seed"], selection)
    lengths = rows[column].map(lambda v: -1 if v is None else len(v))
    if lengths.nunique() != 1 or lengths.iloc[0] < 1:
        raise AblateError(f"'{column}' lists have lengths {sorted(set(lengths))} under "
                          f"{_describe(selection)}; select one n_iterations (T) at a time")
    frame = rows.assign(item_id=rows["item_id"].astype(str),
                        train_seed=rows["train_seed"].astype(int))
    seeds = tuple(sorted(set(frame["train_seed"])))
    full = pd.MultiIndex.from_product([seeds, list(item_ids)], names=["train_seed", "item_id"])
    ordered = frame.set_index(["train_seed", "item_id"])[column].reindex(full)
    values = np.stack([np.asarray(v, dtype=np.float64) for v in ordered.to_numpy()])
    return SeedItemArray(values=values.reshape(len(seeds), len(item_ids), -1), seeds=seeds,
                         item_ids=item_ids)


def item_covariates(records: pd.DataFrame, item_ids: tuple[str, ...],
                    **selection: Any) -> pd.DataFrame:
    """Per-item depth_annotations, depth_lines (float, NaN = unknown) and n_tokens
    (n_prompt_tokens + n_target_tokens), indexed by item_id in the order of ``item_ids``."""
    rows = select(records, **selection)
    _require(rows, ("item_id", "n_prompt_tokens", "n_target_tokens"), selection)
    first = rows.assign(item_id=rows["item_id"].astype(str)).drop_duplicates("item_id")
    first = first.set_index("item_id").reindex(list(item_ids))
    if first["n_prompt_tokens"].isna().any():
        raise AblateError(f"{int(first['n_prompt_tokens'].isna().sum())} item(s) have no "
                          f"records under {_describe(selection)}")
    table = pd.DataFrame(index=first.index)
    for name in ("depth_annotations", "depth_lines"):
        table[name] = (_as_float(first[name], name) if name in first.columns
                       else np.full(len(first), np.nan))
    table["n_tokens"] = (_as_float(first["n_prompt_tokens"], "n_prompt_tokens")
                         + _as_float(first["n_target_tokens"], "n_target_tokens"))
    return table


def check_aligned(reference: SeedItemArray | DrawArray, other: SeedItemArray | DrawArray,
                  what: str) -> None:
    """Raise unless ``other`` has the same seeds and items as ``reference``."""
    if other.seeds != reference.seeds:
        raise AblateError(f"{what} has seeds {other.seeds}, expected {reference.seeds}; every "
                          "condition needs the same training seeds")
    if other.item_ids != reference.item_ids:
        raise AblateError(f"{what} covers {len(other.item_ids)} items that differ from the "
                          f"{len(reference.item_ids)} of the reference condition; re-run the "
                          "missing jobs or select a complete subset")
