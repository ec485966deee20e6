"""Scoring options of generative tasks: the primary outcome and the stop sequences.

A GSM8K-format task (``gsm8k``, ``synthetic``) takes ``options = { outcome = "strict" }``
(the default) and ``options = { stop = [...] }``; its records' ``correct`` is the named
outcome, and ``correct_strict``, ``correct_flexible`` and ``correct_numeric`` are always
recorded beside it:

* "strict": lm-evaluation-harness's ``exact_match,strict-match`` (the first
  ``#### <number>``, compared as a string after lm-eval's normalisation), the default;
* "flexible": lm-eval's ``exact_match,flexible-extract`` (the last number-like run);
* "numeric": the strict extraction numerically equal to the gold within 1e-4 (the
  primary outcome of ablate before this option), which also counts "7.0", "007" and
  "3.1416" for 3.14159 as right.

Generation stops at lm-eval's GSM8K ``until`` sequences (``LM_EVAL_STOP``) by default.
OpenR1 scores the last ``\\boxed{}`` by math equality (its only outcome) and stops at a
new question; CODI answers are scored by CODI's rule and stop at CODI's own tokens.
Teacher-forced mode scores the gold tokens and extracts nothing, so both options are
refused there (``check_scoring_options``).

    >>> scoring_text({"name": "gsm8k", "mode": "generative",
    ...               "options": {"outcome": "flexible", "stop": ["Question:"]}})
    'accuracy = lm-eval flexible-extract exact match; stops `Question:`'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ablate.errors import AblateError, did_you_mean

# lm-evaluation-harness lm_eval/tasks/gsm8k/gsm8k.yaml (task version 3.0),
# generation_kwargs.until.
LM_EVAL_STOP: tuple[str, ...] = ("Question:", "</s>", "<|im_end|>")
DEFAULT_OUTCOME = "strict"
# Outcome name -> (record column, how the report names it).
OUTCOMES: dict[str, tuple[str, str]] = {
    "strict": ("correct_strict", "lm-eval strict-match exact match"),
    "flexible": ("correct_flexible", "lm-eval flexible-extract exact match"),
    "numeric": ("correct_numeric", "numeric match within 1e-4 (of the strict extraction)"),
}
SCORING_OPTIONS = ("outcome", "stop")
TEACHER_FORCED_TEXT = ("accuracy = teacher-forced exact match (the argmax reproduces every "
                       "gold answer token; nothing is generated or extracted)")
BOXED_TEXT = "accuracy = math equality of the last \\boxed{} (OpenR1's only outcome)"
CODI_TEXT = ("accuracy = CODI's rule (the first number after \"The answer is:\" within "
             "1e-4); decoding stops at CODI's own tokens or max_new_tokens")


def check_outcome(value: Any, task: str) -> str:
    """``value`` if it names an outcome (``OUTCOMES``), else a one-line error."""
    if not isinstance(value, str) or value not in OUTCOMES:
        raise AblateError(
            f"Task '{task}' option outcome={value!r} is not an outcome."
            f"{did_you_mean(str(value), OUTCOMES)} Use one of: {', '.join(OUTCOMES)} "
            f"(default '{DEFAULT_OUTCOME}', lm-eval's strict exact match)")
    return value


def check_stop(value: Any, task: str) -> tuple[str, ...]:
    """``value`` as a tuple of non-empty strings, else a one-line error."""
    if (isinstance(value, str) or not isinstance(value, Sequence)
            or not all(isinstance(s, str) and s for s in value)):
        raise AblateError(
            f"Task '{task}' option stop={value!r} must be a list of non-empty strings, "
            f"e.g. stop = {list(LM_EVAL_STOP)!r} (lm-eval's GSM8K stops); [] decodes to "
            "EOS or max_new_tokens")
    return tuple(value)


def check_scoring_options(options: Mapping[str, Any], *, mode: str, codi: bool) -> str | None:
    """Why ``outcome``/``stop`` in a task's ``options`` do not apply (the rest of the
    sentence "'options' ..."), or None: they choose how generated text is cut and scored,
    which teacher-forced mode and CODI models never do."""
    given = [key for key in SCORING_OPTIONS if key in options]
    if not given:
        return None
    names = " and ".join(given)
    it = "them" if len(given) > 1 else "it"
    if codi:
        return (f"sets {names}, which CODI checkpoints do not take: their answers are "
                f"scored by CODI's rule and stop at CODI's own tokens; remove {it}")
    if mode != "generative":
        return (f"sets {names}, which {mode} mode does not use (it scores the gold answer "
                f"tokens: nothing is generated or extracted); remove {it} or set mode = "
                "\"generative\"")
    return None


def scoring_defaults(task_class: type) -> dict[str, Any]:
    """The scoring options ``task_class`` takes, with their defaults (TOML-ready)."""
    found = {}
    for key in SCORING_OPTIONS:
        fields = getattr(task_class, "__dataclass_fields__", {})
        if key in fields:
            default = fields[key].default
            found[key] = list(default) if isinstance(default, tuple) else default
    return found


def outcome_words(name: str) -> str:
    return OUTCOMES[name][1] if name in OUTCOMES else f"unknown outcome {name!r}"


def scoring_text(task: Mapping[str, Any], *, codi: bool = False) -> str:
    """How a task entry of a run's config (``Experiment.to_dict()["tasks"]``) was scored,
    for the report: its accuracy and, when generative, its stop sequences."""
    mode, options = task.get("mode"), task.get("options") or {}
    if codi:
        return CODI_TEXT
    if mode != "generative":
        return TEACHER_FORCED_TEXT
    stops = options.get("stop")
    stop_text = ("stops " + ", ".join(_quoted(s) for s in stops) if stops
                 else "no stop sequence" if stops is not None else "stops not recorded")
    if task.get("name") == "openr1":
        return f"{BOXED_TEXT}; {stop_text}"
    outcome = options.get("outcome")
    if outcome is None:
        return ("accuracy = outcome not recorded (a run of ablate before the outcome "
                "option, whose `correct` was the numeric match); " + stop_text)
    default = " (the default)" if outcome == DEFAULT_OUTCOME else ""
    return f"accuracy = {outcome_words(outcome)}{default}; {stop_text}"


def primary_name(task: Mapping[str, Any], *, codi: bool = False) -> str:
    """A short name of a config task entry's primary outcome ("lm-eval strict exact
    match"), for a legend."""
    if codi:
        return "CODI's rule"
    if task.get("mode") != "generative":
        return "teacher-forced exact match"
    if task.get("name") == "openr1":
        return "boxed math equality"
    outcome = (task.get("options") or {}).get("outcome")
    return {"strict": "lm-eval strict exact match", "flexible": "lm-eval flexible exact match",
            "numeric": "numeric match"}.get(outcome, "outcome not recorded")


def _quoted(text: str) -> str:
    """A stop sequence as the report shows it: escaped, in backticks."""
    return "`" + text.encode("unicode_escape").decode("ascii").replace("`", "\\`") + "`"
