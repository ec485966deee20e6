"""Tests for the task registry (ablate.tasks.get_task / available_tasks)."""

from __future__ import annotations

import pytest

from ablate.errors import AblateError
from ablate.tasks import GSM8KTask, SyntheticTask, available_tasks, get_task


def test_registered_tasks() -> None:
    assert available_tasks() == ["gsm8k", "openr1", "synthetic"]
    assert isinstance(get_task("gsm8k"), GSM8KTask)


def test_unknown_task_suggests_the_close_name() -> None:
    with pytest.raises(AblateError, match=r"Unknown task 'gsm8kk'\. Did you mean 'gsm8k'\?"):
        get_task("gsm8kk")


def test_options_are_the_task_fields() -> None:
    assert get_task("synthetic", max_depth=3, seed=7) == SyntheticTask(max_depth=3, seed=7)
    with pytest.raises(AblateError, match="Unknown option.*depth.*Allowed: max_depth"):
        get_task("synthetic", depth=3)
    with pytest.raises(AblateError, match="max_depth='3' must be int"):
        get_task("synthetic", max_depth="3")
    with pytest.raises(AblateError, match="numeric_only=1 must be bool"):
        get_task("openr1", numeric_only=1)
