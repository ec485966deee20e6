"""Adapters from per-item records (one row per job x item, see docs/architecture.md) to the
(n_seeds, n_items) arrays the statistics take, aligned on item_id and sorted by seed.

Selections filter on config_label, task, mode, n_iterations, intervention, site, k, draw
and, for matrix-CODI study records, n_latents and latent_index; ``None`` selects NA (e.g.
``k=None`` for unablated rows, ``latent_index=None`` for edits of every latent). The seed
axis is ``train_seed``; rows repeated for a (train_seed, item_id) pair are an error, since
they would silently double-weight items.

    >>> svd4 = pivot_condition(records, "correct", intervention="svd_rank_k", k=4)  # doctest: +SKIP
    >>> svd4.values.shape  # (n_seeds, n_items)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ablate.errors import AblateError, unknown_name_error
from ablate.schema import SELECTION_KEYS


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


def _as_float(column: pd.Series | pd.DataFrame, value: str) -> np.ndarray:
    try:
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        pass
    try:  # object columns holding pd.NA or mixed Python numbers
        return column.astype(object).to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise AblateError(f"column '{value}' is not numeric ({error}); pick a numeric "
                          "metric such as correct, answer_loglik or bits_per_byte") from error


@dataclass(frozen=True)
class _Grid:
    """Rows placed on a dense (group keys..., item) grid: codes per axis and axis labels."""

    codes: tuple[np.ndarray, ...]  # per key, (n_rows,) position on that axis
    labels: tuple[tuple[Any, ...], ...]  # per key, sorted distinct values

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(labels) for labels in self.labels)


def _grid(rows: pd.DataFrame, keys: list[str], selection: dict[str, Any]) -> _Grid:
    """Factorise ``keys`` (the last is item_id) and check the grid is complete: one row per
    cell (no repeats) and the same items in every group of the other keys."""
    codes, labels = [], []
    for key in keys:
        column = rows[key].astype(str) if key == "item_id" else rows[key].astype(np.int64)
        code, uniques = pd.factorize(column, sort=True)
        codes.append(code)
        labels.append(tuple(str(u) if key == "item_id" else int(u) for u in uniques))
    grid = _Grid(tuple(codes), tuple(labels))
    cells = np.ravel_multi_index(grid.codes, grid.shape)
    per_cell = np.bincount(cells, minlength=int(np.prod(grid.shape)))
    if per_cell.max() > 1:
        example = dict(zip(keys, np.unravel_index(int(per_cell.argmax()), grid.shape),
                           strict=True))
        example = {key: grid.labels[i][example[key]] for i, key in enumerate(keys)}
        raise AblateError(f"{int((per_cell > 1).sum())} repeated rows, e.g. {example}, under "
                          f"{_describe(selection)}; narrow the selection (e.g. by site, k, "
                          "draw or eval_seed) so each seed has one row per item")
    if per_cell.min() == 0:
        _raise_missing(per_cell.reshape(grid.shape), grid, keys, selection)
    return grid


def _raise_missing(per_cell: np.ndarray, grid: _Grid, keys: list[str],
                   selection: dict[str, Any]) -> None:
    """Name the first group lacking items (or draws) in a user error."""
    present = per_cell.reshape(-1, per_cell.shape[-1])
    groups = list(np.ndindex(*per_cell.shape[:-1]))
    worst = int(np.argmin(present.sum(axis=1)))
    group = {key: grid.labels[i][groups[worst][i]] for i, key in enumerate(keys[:-1])}
    missing = int(per_cell.shape[-1] - present[worst].sum())
    raise AblateError(f"items differ across seeds for {_describe(selection)}: {group} lacks "
                      f"{missing} of the {per_cell.shape[-1]} items (or draws) the other "
                      "groups have; re-run the missing jobs or select a complete subset")


def _dense(grid: _Grid, values: np.ndarray) -> np.ndarray:
    """values (n_rows, ...) placed on the grid -> (*grid.shape, ...)."""
    dense = np.empty(grid.shape + values.shape[1:])
    dense[grid.codes] = values
    return dense


def pivot_condition(records: pd.DataFrame, value: str = "correct",
                    **selection: Any) -> SeedItemArray:
    """One condition as values (n_seeds, n_items): rows train_seed, columns item_id."""
    rows = select(records, **selection)
    _require(rows, ("train_seed", "item_id", value), selection)
    grid = _grid(rows, ["train_seed", "item_id"], selection)
    return SeedItemArray(values=_dense(grid, _as_float(rows[value], value)),
                         seeds=grid.labels[0], item_ids=grid.labels[1])


def pivot_draws(records: pd.DataFrame, value: str = "correct", **selection: Any) -> DrawArray:
    """Random-control draws as values (n_seeds, n_draws, n_items); every seed must have the
    same draws and every (seed, draw) the same items."""
    rows = select(records, **selection)
    _require(rows, ("train_seed", "draw", "item_id", value), selection)
    if rows["draw"].isna().any():
        raise AblateError(f"rows under {_describe(selection)} have no draw index; select "
                          "intervention='random_rank_k' (or another drawn control)")
    draw_sets = {int(seed): tuple(sorted({int(d) for d in draws}))
                 for seed, draws in rows.groupby("train_seed")["draw"].unique().items()}
    if len(set(draw_sets.values())) != 1:
        raise AblateError(f"seeds have different draws under {_describe(selection)}: "
                          f"{draw_sets}; run the same draws for every seed")
    grid = _grid(rows, ["train_seed", "draw", "item_id"], selection)
    return DrawArray(values=_dense(grid, _as_float(rows[value], value)),
                     seeds=grid.labels[0], draws=grid.labels[1], item_ids=grid.labels[2])


def pivot_erank(records: pd.DataFrame, column: str = "erank_per_iter",
                **selection: Any) -> SeedItemArray:
    """Per-iteration effective rank as values (n_seeds, n_items, n_iters); n_iters = T + 1
    (M(0) .. M(T)) and must be the same for every row."""
    rows = select(records, **selection)
    _require(rows, ("train_seed", "item_id", column), selection)
    grid = _grid(rows, ["train_seed", "item_id"], selection)
    lengths = {-1 if v is None else len(v) for v in rows[column]}
    if len(lengths) != 1 or min(lengths) < 1:
        raise AblateError(f"'{column}' lists have lengths {sorted(lengths)} under "
                          f"{_describe(selection)}; select one n_iterations (T) at a time")
    trajectories = np.stack([np.asarray(v, dtype=np.float64) for v in rows[column]])
    return SeedItemArray(values=_dense(grid, trajectories), seeds=grid.labels[0],
                         item_ids=grid.labels[1])


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


# What identifies a record apart from its eval seed (job columns, condition, item); the
# CODI study's job columns too. Rows equal on these are one problem under one condition
# of one checkpoint, evaluated once per eval seed.
EVAL_SEED_KEYS = ("config_label", "checkpoint", "train_seed", "task", "split", "mode",
                  "n_iterations", "model_kind", "n_latents", "condition", "intervention",
                  "site", "k", "draw", "latent_index", "item_id")


def average_eval_seeds(records: pd.DataFrame) -> pd.DataFrame:
    """Records with one row per (checkpoint, task, T, condition, item): each problem's
    outcomes averaged over the eval seeds, within its training seed.

    Eval seeds repeat the same problems on the same checkpoint (new random subspaces,
    new few-shot exemplars), so they are neither new problems nor new seeds; the mean over
    them is the problem's outcome, and the seed x problem statistics apply unchanged
    (docs/statistics.md, "Several eval seeds"). Numeric, boolean and list columns
    (elementwise) are averaged, a 0/1 ``correct`` becoming the share of eval seeds that got
    it right; a column equal across a row's eval seeds keeps its value and dtype; text
    that differs (a prediction, a job id) becomes missing. ``eval_seed`` is dropped and
    ``attrs["eval_seeds"]`` lists the seeds averaged. Records of one eval seed are returned
    as they are.
    """
    if "eval_seed" not in records.columns or records["eval_seed"].nunique(dropna=True) < 2:
        return records
    keys = [key for key in EVAL_SEED_KEYS if key in records.columns]
    codes = records.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    n_groups = int(codes.max()) + 1
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(n_groups))
    first = order[starts]  # one row per group, in order of first appearance
    averaged = {key: records[key].iloc[first].reset_index(drop=True) for key in keys}
    for column in records.columns:
        if column in keys or column == "eval_seed":
            continue
        averaged[column] = _average_column(records[column], codes, first, n_groups)
    frame = pd.DataFrame(averaged)[[c for c in records.columns if c != "eval_seed"]]
    frame.attrs = {**records.attrs, "eval_seeds": sorted(
        int(seed) for seed in records["eval_seed"].dropna().unique())}
    return frame


def _average_column(column: pd.Series, codes: np.ndarray, first: np.ndarray,
                    n_groups: int) -> pd.Series:
    """One column reduced per group: kept when constant, else averaged or missing."""
    kept = column.iloc[first].reset_index(drop=True)
    if column.dtype == object and column.map(lambda v: isinstance(v, (list, np.ndarray))).any():
        return _average_lists(column, codes, kept, n_groups)
    numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    if not numeric:
        text = column.astype("string").fillna("\0")
        constant = text.groupby(codes).nunique().to_numpy() == 1
        return kept.where(pd.Series(constant), pd.NA)
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(values)
    counts = np.bincount(codes, weights=present, minlength=n_groups)
    sums = np.bincount(codes, weights=np.where(present, values, 0.0), minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    low = np.full(n_groups, np.inf)
    high = np.full(n_groups, -np.inf)
    np.minimum.at(low, codes, np.where(present, values, np.inf))
    np.maximum.at(high, codes, np.where(present, values, -np.inf))
    if np.all((low == high) | (counts == 0)):
        return kept  # e.g. token counts, or an outcome no eval seed changed
    return pd.Series(means, dtype="float64")


def _average_lists(column: pd.Series, codes: np.ndarray, kept: pd.Series,
                   n_groups: int) -> pd.Series:
    """Elementwise means of list cells per group (missing where the lengths differ)."""
    values = column.to_list()
    lengths = np.array([len(v) if isinstance(v, (list, np.ndarray)) else -1 for v in values])
    low = np.full(n_groups, np.iinfo(np.int64).max)
    high = np.full(n_groups, -1)
    np.minimum.at(low, codes, lengths)
    np.maximum.at(high, codes, lengths)
    out: list[Any] = [None if low[g] != high[g] else value for g, value in enumerate(kept)]
    for length in np.unique(low[(low == high) & (low > 0)]):
        chosen = (low == length) & (high == length)
        rows = np.flatnonzero(chosen[codes])
        rows = rows[np.argsort(codes[rows], kind="stable")]
        stacked = np.array([values[r] for r in rows], dtype=np.float64)  # (rows, length)
        starts = np.flatnonzero(np.r_[True, np.diff(codes[rows]) != 0])
        means = np.add.reduceat(stacked, starts, axis=0) / np.diff(
            np.r_[starts, rows.size])[:, None]
        for group, mean in zip(codes[rows][starts], means, strict=True):
            out[group] = mean.tolist()
    return pd.Series(out, dtype=object)
