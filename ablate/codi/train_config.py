"""The configuration of native matrix-CODI training (``ablate codi train``).

``CodiTrainConfig`` shares its model, data-budget and optimiser fields with ``ablate
train`` (``ablate.train.arguments``), with the defaults of the recipe that made
checkpoints/codi-synthetic, and adds the task and the CODI settings. Old key names
(``max_steps``, ``warmup_steps``, ``train_limit``, ``eval_items``) are read under the
shared ones. No torch at import, so ``ablate codi train --help`` stays fast.

    >>> CodiTrainConfig(steps=50).to_dict()["steps"]
    50
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ablate.config import arg, default, names_in
from ablate.train.arguments import DataArgs, ModelArgs, OptimArgs

TRAIN_CONFIG_VERSION = 1
SCHEDULES = ("codi", "curriculum")


# The synthetic task's defaults for CODI: depth 1-3, operands 1-5, running totals <= 10 (so
# answers 0-10). With the defaults below this is the recipe of checkpoints/codi-synthetic: a
# tiny CPU model that beats every constant answer after 600 steps (minutes on one thread).
SYNTHETIC_OPTIONS = {"min_depth": 1, "max_depth": 3, "max_value": 5, "max_total": 10,
                     "n_items": 20000}


# Base order: fields list the model, then data, then optimisation (dataclasses collect
# them from the last base to the first).
@dataclass(frozen=True)
class CodiTrainConfig(OptimArgs, DataArgs, ModelArgs):
    """Everything a native CODI training run depends on (see the module docstring). The
    model, data-budget and optimiser fields are those of ``ablate train``
    (``ablate.train.arguments``), with this recipe's defaults."""

    WHAT: ClassVar[str] = "CODI train config"
    PANEL: ClassVar[str] = "CODI"
    VERSION: ClassVar[int] = TRAIN_CONFIG_VERSION
    # Keys written by ablate before the two trainers shared their argument names.
    RENAMED: ClassVar[dict[str, str]] = {"max_steps": "steps", "warmup_steps": "warmup",
                                         "train_limit": "train_items",
                                         "eval_items": "val_items"}

    # the recipe of checkpoints/codi-synthetic
    n_iterations: int = default(1)
    val_items: int = default(300)
    steps: int = default(600)
    batch_size: int = default(16)
    lr: float = default(5e-3)
    warmup: int = default(50)
    # data
    task: str = arg("synthetic", help="Task to train on (ablate.tasks): synthetic | gsm8k.",
                    panel="Data")
    task_options: dict[str, Any] | None = arg(
        None, flag="--task-option", panel="Data",
        help="Task option KEY=VALUE, repeatable (synthetic starts from the recipe's).")
    data_path: str | None = arg(None, help="Local data file or directory (gsm8k).",
                                panel="Data")
    train_split: str = arg("train", help="Split trained on.", panel="Data")
    eval_split: str | None = arg(None, panel="Data", help="Split evaluated at the end "
                                 "(default: validation when the task has one, else test).")
    max_question_tokens: int = arg(200, help="Keep the last N question tokens.", min_value=1,
                                   panel="Data")
    # CODI
    projection: str = arg("network", help="Latent projection: network | norm | identity.",
                          choices=names_in("ablate.codi.native", "PROJECTIONS"))
    n_latents: int = arg(6, help="Latent thoughts (0: none).", flag="--latents", min_value=0)
    schedule: str = arg("codi", help="codi (self-distillation) | curriculum.",
                        choices=SCHEDULES)
    stage_steps: int = arg(200, help="Steps per curriculum stage.", min_value=1)
    latents_per_stage: int = arg(2, help="Latents added per curriculum stage.", min_value=0)
    alpha: float = arg(1.0, help="Teacher cross-entropy weight.", min_value=0.0)
    beta: float = arg(1.0, help="Student cross-entropy weight.", min_value=0.0)
    gamma: float = arg(1.0, help="Distillation weight.", min_value=0.0)
    teacher_targets: str = arg("cot_and_answer", help="What the teacher is trained on.",
                               choices=names_in("ablate.codi.sequences", "TEACHER_TARGETS"))
    time_limit_s: float | None = arg(
        None, flag="--time-limit", min_value=0.0, panel="Optimisation",
        help="Also stop after this many seconds (results then depend on the machine's "
        "speed; default: no limit).")
    version: int = arg(TRAIN_CONFIG_VERSION, help="Config format version.", cli=False)

    def __post_init__(self) -> None:
        if self.task_options is None:
            default_options = dict(SYNTHETIC_OPTIONS) if self.task == "synthetic" else {}
            object.__setattr__(self, "task_options", default_options)
        super().__post_init__()
