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
        expected = type(defaults[key])  # every task option has a str, int or bool default
        if type(value) is not expected:
            raise AblateError(
                f"Task '{name}' option {key}={value!r} must be {expected.__name__} "
                f"(default {defaults[key]!r})"
            )
    return task_class(**options)
