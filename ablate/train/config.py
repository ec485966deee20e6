"""The training configuration: one flat record of strings, numbers and lists.

``TrainConfig`` round-trips through JSON (``to_json``/``from_json``); unknown keys are
errors and every file carries ``version``. It says which model to build, on what data,
and how to optimise it (spec §7.2 defaults, scaled down to CPU-sized models).

    >>> config = TrainConfig(mat_dim=8, steps=300, out="runs/tiny")
    >>> TrainConfig.from_json(config.to_json()) == config
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ablate.errors import AblateError, unknown_keys_error, unknown_name_error
from ablate.model import VARIANTS, MatrixThinkerConfig
from ablate.model.config import ATTENTIONS, EMBEDDINGS, HEADS

TRAIN_CONFIG_VERSION = 1
DATA_KINDS = ("synthetic", "gsm8k", "text")
# Fields that change where or how fast a run happens but not the weights it produces,
# so a training state may be resumed under different values.
RESUME_NEUTRAL = ("device", "save_every", "log_every")


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Units: steps are optimizer updates.

    ``data`` is "synthetic" (optionally "synthetic:key=value,...", the options of
    ``ablate.tasks.SyntheticTask``), "gsm8k" (the hub), "gsm8k:PATH" (a file or a
    directory with train.jsonl) or "text:PATH" (a .txt file or a directory of them).
    ``train_items`` caps the training documents (0: all), ``val_items`` the held-out
    ones (text data ignores both and holds out its last tenth). ``n_probes`` 0 means
    K = mat_dim. ``device`` is "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
    """

    version: int = TRAIN_CONFIG_VERSION
    # model
    attention: str = "frobenius"
    head: str = "multiprobe"
    mat_dim: int = 8
    n_layers: int = 2
    n_heads: int = 2
    n_probes: int = 0
    n_iterations: int = 4
    embedding: str = "outer"
    embedding_rank: int = 1
    max_len: int = 256
    dropout: float = 0.0
    specials: list[str] = field(default_factory=list)
    # data
    data: str = "synthetic"
    train_items: int = 0
    val_items: int = 200
    seq_len: int = 128
    # optimisation (spec §7.2: AdamW betas (0.9, 0.98), warmup + cosine, clip 1.0)
    steps: int = 300
    batch_size: int = 8
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    # bookkeeping
    eval_every: int = 100
    save_every: int = 50
    log_every: int = 10
    device: str = "auto"
    out: str = "runs/train"

    def __post_init__(self) -> None:
        self.validate()

    # -- validation ---------------------------------------------------------------
    def validate(self) -> None:
        """Raise ``AblateError`` naming the first bad value, the allowed values and the fix."""
        if self.version != TRAIN_CONFIG_VERSION:
            raise AblateError(
                f"train config version {self.version!r} is not supported (expected "
                f"{TRAIN_CONFIG_VERSION}); rewrite the config with this version of ablate"
            )
        if self.attention not in ATTENTIONS:
            raise unknown_name_error("attention", str(self.attention), ATTENTIONS)
        if self.head not in HEADS:
            raise unknown_name_error("head", str(self.head), HEADS)
        if self.embedding not in EMBEDDINGS:
            raise unknown_name_error("embedding", str(self.embedding), EMBEDDINGS)
        positive = (
            "mat_dim",
            "n_layers",
            "n_heads",
            "max_len",
            "seq_len",
            "steps",
            "batch_size",
            "eval_every",
            "save_every",
            "log_every",
            "embedding_rank",
            "val_items",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AblateError(f"{name}={value!r} must be a positive integer")
        for name in ("n_probes", "n_iterations", "train_items", "warmup", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise AblateError(f"{name}={value!r} must be a non-negative integer")
        if self.seq_len > self.max_len:
            raise AblateError(
                f"seq_len={self.seq_len} exceeds max_len={self.max_len} (the positional "
                "table): lower --seq-len or raise --max-len"
            )
        if self.mat_dim % self.n_heads:
            raise AblateError(
                f"n_heads={self.n_heads} does not divide mat_dim={self.mat_dim}; "
                "choose --heads among the divisors of --mat-dim"
            )
        if self.warmup > self.steps:
            raise AblateError(f"warmup={self.warmup} exceeds steps={self.steps}; lower --warmup")
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise AblateError(f"{name}={value!r} must be a non-negative number")
        if not 0.0 <= self.dropout < 1.0:
            raise AblateError(f"dropout={self.dropout!r} must be in [0, 1)")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise AblateError(
                f"device {self.device!r} is not one of auto, cpu, cuda, cuda:N; "
                "pass --device cpu or --device cuda"
            )
        if not isinstance(self.specials, list) or not all(
            isinstance(s, str) for s in self.specials
        ):
            raise AblateError(f"specials={self.specials!r} must be a list of strings")
        if not self.out:
            raise AblateError("out is empty; pass --out DIR for the checkpoint")
        parse_data(self.data)

    # -- conversions --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train config") -> TrainConfig:
        allowed = {spec.name for spec in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise unknown_keys_error(source, unknown, sorted(allowed))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str, source: str = "train config") -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise AblateError(f"{source}: not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise AblateError(f"{source}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source)

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    # -- derived ------------------------------------------------------------------
    def model_config(self, vocab_size: int) -> MatrixThinkerConfig:
        """The model this run trains, for a tokenizer with ``vocab_size`` ids."""
        return MatrixThinkerConfig(
            mat_dim=self.mat_dim,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_probes=self.n_probes or self.mat_dim,
            vocab_size=vocab_size,
            max_len=self.max_len,
            dropout=self.dropout,
            attention=self.attention,
            head=self.head,
            embedding=self.embedding,
            embedding_rank=self.embedding_rank,
            n_iterations=self.n_iterations,
            specials=list(self.specials),
        )

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
