"""The per-item record schema: every column a run directory's records hold, its pandas
dtype, its group and its meaning, and which columns identify a record.

One Parquet row per (job, condition, item). The job runner writes the job columns, the
evaluation the condition, item and metric columns, and a CODI job also the CODI columns.
Metrics a mode does not compute are missing (NaN / NA), never a made-up value. This
module is plain data (no torch, no pandas), so the evaluation, the results store, the
statistics and the docs all read it; ``docs/architecture.md`` lists the same columns
(``tests/test_schema.py`` checks that it does).

    >>> COLUMNS["k"].dtype, COLUMNS["k"].group
    ('Int64', 'condition')
    >>> RECORD_KEY
    ('job_id', 'condition', 'item_id')
"""

from __future__ import annotations

from dataclasses import dataclass

GROUPS = ("job", "condition", "item", "metric", "codi")


@dataclass(frozen=True)
class Column:
    """One record column: ``dtype`` is the pandas dtype it is written with ("object" for
    lists), ``group`` one of ``GROUPS``."""

    name: str
    dtype: str
    group: str
    meaning: str


def _columns(group: str, *specs: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, dtype, group, meaning) for name, dtype, meaning in specs)


_JOB = _columns(
    "job",
    ("job_id", "string", "the job's id: readable grid cell plus a hash of what its records "
                         "depend on"),
    ("checkpoint", "string", "absolute path of the checkpoint"),
    ("config_label", "string", "the checkpoint's label (e.g. the head: 'multiprobe'); CODI: "
                               "'LABEL-Ln', n = n_latents"),
    ("train_seed", "int64", "training seed of the checkpoint"),
    ("eval_seed", "int64", "evaluation seed (few-shot draws, random subspaces)"),
    ("task", "string", "task name ('synthetic', 'gsm8k', 'openr1')"),
    ("split", "string", "task split"),
    ("mode", "string", "'teacher_forced' or 'generative'"),
    ("n_iterations", "int64", "T, the thinking iterations (CODI: the checkpoint's own T)"),
)
_CONDITION = _columns(
    "condition",
    ("condition", "string", "canonical label, 'none' when unablated (e.g. "
                            "'svd_rank_k@head_input:k=4', 'random_rank_k@latent:k=2:draw=1')"),
    ("intervention", "string", "'none' or the intervention names (+variant) joined by '+'"),
    ("site", "string", "site alias(es) joined by '+', 'none' when unablated"),
    ("k", "Int64", "projection rank; NA when unablated or parts disagree"),
    ("draw", "Int64", "random draw; NA unless random"),
)
_ITEM = _columns(
    "item",
    ("item_id", "string", "the task's item id"),
    ("doc_hash", "string", "sha256[:16] of the source record"),
    ("prompt_hash", "string", "sha256[:16] of the prompt text (few-shot prompt when "
                              "generative)"),
    ("target_hash", "string", "sha256[:16] of the gold target text"),
    ("depth_annotations", "Int64", "calculator annotations (a=b in double angle brackets) in the "
                                   "solution; NA if unknown"),
    ("depth_lines", "Int64", "solution lines before ####; NA if unknown"),
    ("n_prompt_tokens", "int64", "prompt tokens fed to the model (after truncation)"),
    ("n_target_tokens", "int64", "tokens of the gold target text"),
    ("prompt_truncated", "int64", "prompt tokens dropped from the left to fit the model"),
)
_METRIC = _columns(
    "metric",
    ("answer_loglik", "float64", "sum of ln p over the answer tokens (teacher-forced)"),
    ("solution_nats", "float64", "-sum of ln p over every target token (teacher-forced)"),
    ("solution_bytes", "int64", "UTF-8 bytes of the gold target text"),
    ("bits_per_byte", "float64", "solution_nats / ln 2 / solution_bytes (teacher-forced)"),
    ("tf_exact_match", "boolean", "argmax reproduces every answer token (teacher-forced)"),
    ("prediction", "string", "generated text up to a stop sequence; '' when teacher-forced"),
    ("correct_strict", "boolean", "lm-eval strict-match exact match: the first '#### N' "
                                  "equals gold after lm-eval's normalisation (generative)"),
    ("correct_flexible", "boolean", "lm-eval flexible-extract exact match: the last number "
                                    "equals gold likewise (generative)"),
    ("correct_numeric", "boolean", "the strict extraction numerically equals gold within "
                                   "1e-4 (generative; OpenR1: the last boxed answer, math "
                                   "equality; CODI: the first number after the cue)"),
    ("invalid", "boolean", "nothing extracted by the task's rule (generative; GSM8K: no "
                           "'#### N', whatever the outcome)"),
    ("correct", "float64", "primary 0/1 outcome: tf_exact_match (teacher-forced); the task's "
                           "outcome option (generative GSM8K-format: correct_strict by "
                           "default); correct_numeric (OpenR1, CODI)"),
    ("erank_per_iter", "object", "T+1 floats: mean effective rank of M(0..T) over positions; "
                                 "null for CODI"),
    ("erank_answer_per_iter", "object", "T+1 floats: the same over answer positions (those "
                                        "predicting answer tokens; generative: those "
                                        "producing tokens)"),
    ("erank_head_input", "float64", "mean effective rank of the head input over positions"),
)
_CODI = _columns(
    "codi",
    ("model_kind", "string", "'native' or 'research' CODI checkpoint"),
    ("n_latents", "int64", "latent thoughts before the answer (0 = the no-thought baseline)"),
    ("latent_index", "Int64", "the cut latent j (0-based, site latent.j); NA when every "
                              "latent or none is cut"),
    ("n_question_tokens", "int64", "question tokens fed (after max_question_tokens)"),
    ("latent_erank", "object", "n_latents floats: research effective rank of each thought "
                               "Z_1..Z_n, as fed back (after any cut)"),
    ("latent_erank_mean", "float64", "their mean; NaN without latents"),
    ("latent_stable_rank", "object", "n_latents floats: stable rank of each thought"),
    ("latent_participation_ratio", "object", "n_latents floats: participation ratio"),
    ("latent_numerical_rank", "object", "n_latents ints: numerical rank"),
)

COLUMNS: dict[str, Column] = {c.name: c for c in (*_JOB, *_CONDITION, *_ITEM, *_METRIC, *_CODI)}
JOB_COLUMNS = tuple(c.name for c in _JOB)
CONDITION_COLUMNS = tuple(c.name for c in _CONDITION)
ITEM_COLUMNS = tuple(c.name for c in _ITEM)
METRIC_COLUMNS = tuple(c.name for c in _METRIC)
CODI_COLUMNS = tuple(c.name for c in _CODI)
# What ``ablate.evaluation.evaluate`` returns, in this order (the job runner puts the job
# columns in front; a CODI job appends the CODI columns).
EVALUATION_COLUMNS = CONDITION_COLUMNS + ITEM_COLUMNS + METRIC_COLUMNS

# Identify a record: unique within a run directory.
RECORD_KEY = ("job_id", "condition", "item_id")
# Identify a record across runs and code versions on the same checkpoints (the job id
# carries a config hash, so this spells the job out).
IDENTITY_COLUMNS = ("checkpoint", "config_label", "train_seed", "eval_seed", "task", "split",
                    "mode", "n_iterations", "condition", "item_id")
# Columns the statistics select rows by (``ablate.stats.frames.select``).
SELECTION_KEYS = ("config_label", "task", "mode", "n_iterations", "intervention", "site", "k",
                  "draw", "n_latents", "latent_index")
# Metrics only one mode computes (the other leaves them missing).
TEACHER_FORCED_ONLY = ("answer_loglik", "solution_nats", "bits_per_byte", "tf_exact_match")
GENERATIVE_ONLY = ("correct_strict", "correct_flexible", "correct_numeric", "invalid")


def dtypes(columns: tuple[str, ...] | list[str]) -> dict[str, str]:
    """{column: pandas dtype} of ``columns`` (names of ``COLUMNS``)."""
    return {name: COLUMNS[name].dtype for name in columns}


def markdown_table(group: str) -> str:
    """The columns of ``group`` as a Markdown table ("| column | dtype | meaning |"), as
    docs/architecture.md shows them."""
    assert group in GROUPS, group
    rows = [f"| `{c.name}` | {c.dtype} | {c.meaning} |"
            for c in COLUMNS.values() if c.group == group]
    return "\n".join(["| column | dtype | meaning |", "|---|---|---|", *rows])
