"""The per-item record an evaluation returns: condition, item and metric columns.

The job columns (job_id, checkpoint, config_label, train_seed, eval_seed, task, split,
mode, n_iterations) are added by the job runner; everything else is filled here. Metrics
a mode does not compute are missing (NaN / <NA>), never a made-up value.

    >>> frame = to_frame([row_a, row_b])        # doctest: +SKIP
    >>> list(frame.columns) == list(COLUMNS)    # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ablate.interventions import Condition
from ablate.tasks.base import Item

# column -> (pandas dtype, meaning), in output order.
COLUMNS: dict[str, tuple[str, str]] = {
    # condition
    "condition": ("string", "canonical label, 'none' when unablated"),
    "intervention": ("string", "'none' or the intervention names (+variant) joined by '+'"),
    "site": ("string", "site alias(es) joined by '+', 'none' when unablated"),
    "k": ("Int64", "projection rank; <NA> when unablated or parts disagree"),
    "draw": ("Int64", "random draw; <NA> unless random"),
    # item
    "item_id": ("string", "the task's item id"),
    "doc_hash": ("string", "sha256[:16] of the source record"),
    "prompt_hash": ("string", "sha256[:16] of the prompt text (few-shot prompt when generative)"),
    "target_hash": ("string", "sha256[:16] of the gold target text"),
    "depth_annotations": ("Int64", "<<...=...>> annotations in the solution; <NA> if unknown"),
    "depth_lines": ("Int64", "solution lines before ####; <NA> if unknown"),
    "n_prompt_tokens": ("int64", "prompt tokens fed to the model (after truncation)"),
    "n_target_tokens": ("int64", "tokens of the gold target text"),
    "prompt_truncated": ("int64", "prompt tokens dropped from the left to fit max_len"),
    # metrics
    "answer_loglik": ("float64", "sum of ln p over the answer tokens (teacher-forced)"),
    "solution_nats": ("float64", "-sum of ln p over every target token (teacher-forced)"),
    "solution_bytes": ("int64", "UTF-8 bytes of the gold target text"),
    "bits_per_byte": ("float64", "solution_nats / ln 2 / solution_bytes (teacher-forced)"),
    "tf_exact_match": ("boolean", "argmax reproduces every answer token (teacher-forced)"),
    "prediction": ("string", "generated text up to a stop sequence; '' when teacher-forced"),
    "correct_strict": ("boolean", "strict extraction equals gold (generative)"),
    "correct_flexible": ("boolean", "flexible extraction equals gold (generative)"),
    "correct_numeric": ("boolean", "strict extraction numerically equals gold (generative)"),
    "invalid": ("boolean", "nothing extracted by the strict rule (generative)"),
    "correct": ("float64", "primary 0/1 outcome: tf_exact_match or correct_numeric"),
    "erank_per_iter": ("object", "T+1 floats: mean effective rank of M(0..T) over positions"),
    "erank_answer_per_iter": ("object", "T+1 floats: the same over answer positions (those "
                              "predicting answer tokens; generative: those producing tokens)"),
    "erank_head_input": ("float64", "mean effective rank of the head input over positions"),
}

TEACHER_FORCED_ONLY = ("answer_loglik", "solution_nats", "bits_per_byte", "tf_exact_match")
GENERATIVE_ONLY = ("correct_strict", "correct_flexible", "correct_numeric", "invalid")


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


def to_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Records as a DataFrame with ``COLUMNS`` in order and their dtypes; columns a mode
    leaves out are filled with missing values."""
    assert all(set(row) <= set(COLUMNS) for row in rows), "unknown record column"
    frame = pd.DataFrame(list(rows), columns=list(COLUMNS))
    for column, (dtype, _) in COLUMNS.items():
        if dtype != "object":
            frame[column] = frame[column].astype(dtype)
    return frame


def condition_rows(condition: Condition, item_rows: Sequence[dict[str, Any]]) -> list[dict]:
    """Condition columns prepended to each (item + metric) row."""
    fields = condition.record_fields()
    return [{**fields, **row} for row in item_rows]
