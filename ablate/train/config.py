"""The training configuration: one flat record of strings, numbers and lists.

``TrainConfig`` round-trips through JSON (``to_json``/``from_json``); unknown keys are
errors and every file carries ``version``. It says which model to build, on what data,
and how to optimise it (spec §7.2 defaults, scaled down to CPU-sized models). The model,
data-budget and optimiser fields are the shared groups of ``ablate.train.arguments``.

    >>> config = TrainConfig(mat_dim=8, steps=300, out="runs/tiny")
    >>> TrainConfig.from_json(config.to_json()) == config
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ablate.config import arg, check_device_name
from ablate.errors import AblateError, unknown_name_error
from ablate.train.arguments import DataArgs, ModelArgs, OptimArgs

if TYPE_CHECKING:
    from ablate.model import MatrixThinkerConfig

TRAIN_CONFIG_VERSION = 1
DATA_KINDS = ("synthetic", "gsm8k", "text")
# Fields that change where or how fast a run happens but not the weights it produces,
# so a training state may be resumed under different values.
RESUME_NEUTRAL = ("device", "save_every", "log_every")


# Base order: fields list the model, then data, then optimisation (dataclasses collect
# them from the last base to the first).
@dataclass(frozen=True)
class TrainConfig(OptimArgs, DataArgs, ModelArgs):
    """Everything one training run needs. Units: steps are optimizer updates.

    ``data`` is "synthetic" (optionally "synthetic:key=value,...", the options of
    ``ablate.tasks.SyntheticTask``), "gsm8k" (the hub), "gsm8k:PATH" (a file or a
    directory with train.jsonl) or "text:PATH" (a .txt file or a directory of them).
    ``train_items`` caps the training documents (0: all), ``val_items`` the held-out
    ones (text data ignores both and holds out its last tenth). ``n_probes`` 0 means
    K = mat_dim. ``device`` is "auto" (CUDA when present), "cpu", "cuda", "cuda:N" or "mps".
    """

    WHAT: ClassVar[str] = "train config"
    PANEL: ClassVar[str] = "Run"
    VERSION: ClassVar[int] = TRAIN_CONFIG_VERSION

    version: int = arg(TRAIN_CONFIG_VERSION, help="Config format version.", cli=False)
    specials: list[str] = arg(default_factory=list, cli=False,
                              help="Special tokens appended to the byte vocabulary.")
    data: str = arg("synthetic", panel="Data",
                    help="synthetic[:key=value,...] | gsm8k[:PATH] | text:PATH")
    seq_len: int = arg(128, help="Training window length.", min_value=1, panel="Data")
    eval_every: int = arg(100, help="Steps between validations.", min_value=1)
    save_every: int = arg(50, help="Steps between resumable training states.", min_value=1)
    log_every: int = arg(10, help="Steps between logged training losses.", min_value=1)
    device: str = arg("auto", help="auto | cpu | cuda | cuda:N | mps")
    out: str = arg("runs/train", help="Checkpoint directory; may hold {seed}.")

    # -- validation ---------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``AblateError`` naming the first bad value, the allowed values and the fix."""
        super().validate()
        if self.seq_len > self.max_len:
            raise AblateError(
                f"seq_len={self.seq_len} exceeds max_len={self.max_len} (the positional "
                "table): lower --seq-len or raise --max-len"
            )
        if self.warmup > self.steps:
            raise AblateError(f"warmup={self.warmup} exceeds steps={self.steps}; lower --warmup")
        check_device_name(self.device)
        if not self.out:
            raise AblateError("out is empty; pass --out DIR for the checkpoint")
        parse_data(self.data)

    # -- conversions --------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "train config") -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise AblateError(f"{source}: not valid JSON ({err})") from err
        return cls.from_dict(data, source)

    # -- derived ------------------------------------------------------------------
    def model_config(self, vocab_size: int, specials: list[str] | None = None
                     ) -> MatrixThinkerConfig:
        """The model this run trains, for a tokenizer with ``vocab_size`` ids."""
        return super().model_config(vocab_size, self.specials if specials is None else specials)

    def differences(self, other: TrainConfig) -> list[str]:
        """``"key: mine != theirs"`` for every field that changes what training produces."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{key}: {theirs[key]!r} != {mine[key]!r}"
            for key in sorted(mine)
            if key not in RESUME_NEUTRAL and mine[key] != theirs[key]
        ]


def variant_parts(variant: str) -> tuple[str, str]:
    """(attention, head) of a research variant name (``ablate.model.VARIANTS``)."""
    from ablate.model import VARIANTS

    if variant not in VARIANTS:
        raise unknown_name_error("variant", variant, VARIANTS)
    return VARIANTS[variant]


def parse_data(spec: str) -> tuple[str, str]:
    """Split a data spec into (kind, argument); checks that a named path exists.

    "synthetic" -> ("synthetic", ""), "synthetic:n_items=5000" -> ("synthetic",
    "n_items=5000"), "gsm8k:/data/gsm8k" -> ("gsm8k", "/data/gsm8k"), "text:a.txt" ->
    ("text", "a.txt").
    """
    kind, _, argument = str(spec).partition(":")
    if kind not in DATA_KINDS:
        raise AblateError(
            f"data {spec!r} is not understood; use synthetic[:key=value,...], "
            "gsm8k[:PATH] or text:PATH"
        )
    if kind == "text" and not argument:
        raise AblateError("data 'text' needs a path: pass --data text:PATH (a .txt file or folder)")
    if kind in ("gsm8k", "text") and argument and not Path(argument).exists():
        raise AblateError(
            f"data path {argument!r} (from --data {spec}) does not exist; pass an existing "
            f"{'file or directory with train.jsonl' if kind == 'gsm8k' else '.txt file or folder'}"
        )
    if kind == "synthetic":
        synthetic_options(argument)
    return kind, argument


def synthetic_options(argument: str) -> dict[str, int]:
    """``"n_items=5000,max_depth=3"`` -> {"n_items": 5000, "max_depth": 3}."""
    options: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in argument.split(","))):
        key, equals, value = part.partition("=")
        if not equals or not value.strip().lstrip("-").isdigit():
            raise AblateError(
                f"synthetic option {part!r} is not key=integer; write e.g. "
                "--data synthetic:n_items=5000,max_depth=4"
            )
        options[key.strip()] = int(value)
    return options
