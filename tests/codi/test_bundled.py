"""The bundled CODI checkpoint: loads, is small, and reproduces its recorded accuracy,
which beats every constant answer on the same held-out items."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.checkpoint import load_checkpoint
from ablate.codi.evaluation import accuracy, best_constant, evaluate_items
from ablate.codi.saving import load_codi
from ablate.tasks import get_task

BUNDLED = Path(__file__).resolve().parents[2] / "checkpoints" / "codi-synthetic"


@pytest.fixture(scope="module")
def recorded() -> dict:
    if not BUNDLED.is_dir():
        pytest.fail(f"bundled checkpoint missing at {BUNDLED}")
    return load_checkpoint(BUNDLED).info.metadata


def test_bundled_checkpoint_is_small_and_loads(recorded):
    size = sum(p.stat().st_size for p in BUNDLED.iterdir() if p.is_file())
    assert size < 1_000_000
    codi = load_codi(BUNDLED)
    assert codi.settings.n_latents == recorded["train_config"]["n_latents"]


@pytest.mark.slow  # evaluates 300 problems (a few seconds)
def test_bundled_checkpoint_reproduces_its_recorded_accuracy(recorded):
    metrics, config = recorded["metrics"], recorded["train_config"]
    task = get_task(config["task"], **config["task_options"])
    items = task.load(metrics["eval_split"], limit=metrics["eval_items"])
    codi = load_codi(BUNDLED)
    measured = accuracy(evaluate_items(codi, items, codi.settings.n_latents, task=task,
                                       batch_size=100,
                                       max_question_tokens=config["max_question_tokens"]))
    # One item of slack for float round-off on another CPU flipping one argmax.
    assert abs(measured - metrics["accuracy"]) <= 1 / len(items) + 1e-12
    _, constant = best_constant(items)
    assert measured > constant and measured > metrics["chance"]
