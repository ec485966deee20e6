"""Building the per-item records an evaluation returns (condition, item and metric
columns of ``ablate.schema``; the job runner adds the job columns). Metrics a mode does
not compute are missing (NaN / <NA>), never a made-up value.

    >>> frame = to_frame([row_a, row_b])                   # doctest: +SKIP
    >>> list(frame.columns) == list(EVALUATION_COLUMNS)    # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ablate.interventions import Condition
from ablate.schema import COLUMNS as SCHEMA
from ablate.schema import EVALUATION_COLUMNS
from ablate.tasks.base import Item


def item_columns(
    item: Item,
    *,
    prompt_hash: str,
    target_hash: str,
    n_prompt_tokens: int,
    n_target_tokens: int,
    prompt_truncated: int,
) -> dict[str, Any]:
    """The item columns of a record."""
    return {
        "item_id": item.item_id,
        "doc_hash": item.doc_hash,
        "prompt_hash": prompt_hash,
        "target_hash": target_hash,
        "depth_annotations": item.depth_annotations,
        "depth_lines": item.depth_lines,
        "n_prompt_tokens": n_prompt_tokens,
        "n_target_tokens": n_target_tokens,
        "prompt_truncated": prompt_truncated,
    }


def bits_per_byte(nats: float, n_bytes: int) -> float:
    return nats / math.log(2) / n_bytes if n_bytes else math.nan


def to_frame(rows: Sequence[dict[str, Any]],
             columns: Sequence[str] = EVALUATION_COLUMNS) -> pd.DataFrame:
    """Records as a DataFrame with ``columns`` (names of ``ablate.schema.COLUMNS``) in
    order and their schema dtypes; columns a row leaves out are missing values."""
    assert all(set(row) <= set(columns) for row in rows), "unknown record column"
    frame = pd.DataFrame(list(rows), columns=list(columns))
    for column in columns:
        dtype = SCHEMA[column].dtype
        if dtype != "object":
            frame[column] = frame[column].astype(dtype)
    return frame


def condition_rows(condition: Condition, item_rows: Sequence[dict[str, Any]]) -> list[dict]:
    """Condition columns prepended to each (item + metric) row."""
    fields = condition.record_fields()
    return [{**fields, **row} for row in item_rows]
