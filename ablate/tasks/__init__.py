"""Evaluation tasks by name: GSM8K, OpenR1-Math and the embedded synthetic arithmetic task.

A task loads ``Item``s for a split, knows its text layout (``task.text_format``, used by
``ablate.tasks.prompts``) and scores generations (``task.score``). Options are the task
dataclass's fields and are checked by name.

    >>> task = get_task("synthetic", max_depth=3, seed=1)
    >>> len(task.load("test", limit=4))
    4
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ablate.errors import AblateError, did_you_mean, unknown_name_error
from ablate.tasks.base import Item, LoadReport, Task, TextFormat
from ablate.tasks.extraction import GenerativeScore
from ablate.tasks.gsm8k import GSM8KTask
from ablate.tasks.openr1 import OpenR1Task
from ablate.tasks.outcomes import (
    check_outcome,
    check_scoring_options,
    check_stop,
    scoring_defaults,
)
from ablate.tasks.synthetic import SyntheticTask

TASKS: dict[str, type[Task]] = {
    GSM8KTask.name: GSM8KTask,
    OpenR1Task.name: OpenR1Task,
    SyntheticTask.name: SyntheticTask,
}

__all__ = [
    "GSM8KTask",
    "GenerativeScore",
    "Item",
    "LoadReport",
    "OpenR1Task",
    "SyntheticTask",
    "TASKS",
    "Task",
    "TextFormat",
    "available_tasks",
    "get_task",
    "scoring_options",
]


def available_tasks() -> list[str]:
    return sorted(TASKS)


def get_task(name: str, **options: Any) -> Task:
    """The task registered as ``name``, built with ``options`` (its dataclass fields)."""
    if name not in TASKS:
        raise unknown_name_error("task", name, TASKS)
    task_class = TASKS[name]
    defaults = {spec.name: spec.default for spec in fields(task_class)}  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise AblateError(
            f"Unknown option(s) {', '.join(unknown)} for task '{name}'."
            f"{did_you_mean(unknown[0], defaults)} "
            f"Allowed: {', '.join(sorted(defaults)) or '(none)'}"
        )
    for key, value in options.items():
        expected = type(defaults[key])  # a str, int, bool or tuple (of str) default
        if expected is tuple:
            continue  # a TOML list arrives as a list: the task checks it
        if type(value) is not expected:
            raise AblateError(
                f"Task '{name}' option {key}={value!r} must be {expected.__name__} "
                f"(default {defaults[key]!r})"
            )
    return task_class(**options)


def scoring_options(name: str, options: dict[str, Any], *, mode: str,
                    codi: bool) -> dict[str, Any]:
    """A task entry's ``options`` with the scoring options it leaves out (``outcome``,
    ``stop``) filled in with the task's defaults when it is generative on a Matrix
    Thinker, so they enter the config hash and the run's manifest; an error (the rest of
    "'options' ...") when it sets them where they do not apply (teacher-forced, CODI)."""
    reason = check_scoring_options(options, mode=mode, codi=codi)
    if reason is not None:
        raise AblateError(reason)
    if codi or mode != "generative" or name not in TASKS:
        return dict(options)
    defaults = scoring_defaults(TASKS[name])
    if "outcome" in options and "outcome" in defaults:
        check_outcome(options["outcome"], name)
    if "stop" in options and "stop" in defaults:
        check_stop(options["stop"], name)
    return {**options, **{key: value for key, value in defaults.items() if key not in options}}
