"""``load_checkpoint``: one entry point for native directories and research ``.pt`` files.

    >>> model, tokenizer, info = load_checkpoint("runs/exp_3d_attn")  # doctest: +SKIP
    >>> info.format, info.config["attention"]                         # doctest: +SKIP
    ('research', 'matrix3d')
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ablate.checkpoint.native import CONFIG_FILE, WEIGHTS_FILE, is_native, read_native
from ablate.checkpoint.research import infer_shapes, read_state_dict
from ablate.checkpoint.settings import (
    OVERRIDE_KEYS,
    Source,
    named_variant,
    normalise,
    read_sidecars,
    resolve_config,
)
from ablate.checkpoint.weights import build_model, check_tensors
from ablate.errors import AblateError, unknown_name_error
from ablate.model import MatrixThinker, MatrixThinkerConfig
from ablate.tokenizer import HF_TOKENIZER_FILES, ByteTokenizer, Tokenizer, load_tokenizer

logger = logging.getLogger(__name__)

RESEARCH_FILE = "best.pt"
# The byte vocabulary of the reference models: 256 bytes + these specials = 259 ids.
REFERENCE_SPECIALS = ("<pad>", "<bot>", "<eot>")
CONFIG_KEYS = tuple(
    name for name in inspect.signature(MatrixThinkerConfig.__init__).parameters
    if name not in ("self", "kwargs", "ablate_config_version")
)


@dataclass
class CheckpointInfo:
    """What was loaded and how. ``config`` holds the ``MatrixThinkerConfig`` values
    (``CONFIG_KEYS``); ``notes`` lists every assumption and repair made while loading."""

    format: str  # "native" | "research"
    path: str  # the checkpoint directory (native) or the .pt file (research)
    variant: str  # a research variant name (ablate.model.VARIANTS) or "custom"
    config: dict[str, Any]
    n_params: int  # trainable parameters, the spec §5 count (buffers excluded)
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Loaded(NamedTuple):
    """``model`` in eval mode; ``tokenizer`` (None only with ``require_tokenizer=False``)."""

    model: MatrixThinker
    tokenizer: Tokenizer | None
    info: CheckpointInfo


def config_values(config: MatrixThinkerConfig) -> dict[str, Any]:
    """The config as plain JSON values, ablate's keys only."""
    return {key: getattr(config, key) for key in CONFIG_KEYS}


def locate(path: Path) -> tuple[str, Path]:
    """("native", directory) or ("research", .pt file) for a user-given path."""
    if not path.exists():
        raise AblateError(
            f"Checkpoint {path} does not exist; pass a checkpoint directory "
            f"({CONFIG_FILE} + {WEIGHTS_FILE}) or a research .pt file"
        )
    if path.is_file():
        if path.name in (WEIGHTS_FILE, CONFIG_FILE) and is_native(path.parent):
            return "native", path.parent
        return "research", path
    if is_native(path):
        return "native", path
    if (path / RESEARCH_FILE).is_file():
        return "research", path / RESEARCH_FILE
    found = sorted(p.name for p in path.iterdir())
    listing = ", ".join(found[:6]) + (" ..." if len(found) > 6 else "") if found else "nothing"
    other_pt = [name for name in found if name.endswith(".pt")]
    fix = (f"pass the .pt file itself, e.g. {path / other_pt[0]}" if other_pt else
           "pass a directory saved by ablate or holding a research best.pt")
    raise AblateError(
        f"{path} holds neither {CONFIG_FILE} + {WEIGHTS_FILE} (native) nor {RESEARCH_FILE} "
        f"(research); found {listing}; {fix}"
    )


def load_checkpoint(
    path: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    require_tokenizer: bool = True,
) -> Loaded:
    """Load a native or research checkpoint as a ``MatrixThinker`` in eval mode.

    ``overrides`` (keys ``OVERRIDE_KEYS``; None values are ignored) beat everything stored
    or inferred: ``attention`` ("frobenius" | "matrix3d"), ``n_heads``, ``variant``,
    ``embedding``, ``embedding_rank``, ``n_iterations``, ``dropout``, ``tokenizer`` (a
    directory). Without a tokenizer (non-byte vocab, no files, no override) it raises,
    unless ``require_tokenizer`` is False.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in given:
        if key not in OVERRIDE_KEYS:
            raise unknown_name_error("checkpoint override", key, OVERRIDE_KEYS)
    flags = normalise({k: v for k, v in given.items() if k != "tokenizer"}, "overrides")
    kind, target = locate(Path(path))
    if kind == "native":
        config, state, metadata, notes = read_native(target)
        weights_name = str(target / WEIGHTS_FILE)
        notes += check_tensors(state, weights_name)
        config = _apply_overrides(config, flags, str(target), notes)
        variant = named_variant(config, [flags])
    else:
        state, notes = read_state_dict(target)
        weights_name = str(target)
        notes += check_tensors(state, weights_name)
        shapes = infer_shapes(state, str(target))
        sidecars, extra = read_sidecars(target)
        config, more = resolve_config(shapes, [flags, *sidecars], str(target))
        variant = named_variant(config, [flags, *sidecars])
        notes += more
        used = [s.name for s in sidecars if not s.hint]
        metadata = {"source": str(target), "sidecars": used, **extra}
    tokenizer = _resolve_tokenizer(kind, target, config, given.get("tokenizer"),
                                   require_tokenizer, notes)
    if isinstance(tokenizer, ByteTokenizer) and not config.specials:
        config.specials = list(tokenizer.specials)
    model = build_model(config, state, weights_name)
    try:
        model.to(torch.device(device))
    except (RuntimeError, AssertionError) as err:
        raise AblateError(f"device {device!r} is not usable here ({err}); use 'cpu'") from err
    info = CheckpointInfo(
        format=kind, path=str(target), variant=variant, config=config_values(config),
        n_params=model.num_parameters_trainable(), metadata=metadata, notes=notes,
    )
    for note in notes:
        logger.info("%s: %s", target, note)
    return Loaded(model.eval(), tokenizer, info)


def _apply_overrides(
    config: MatrixThinkerConfig, flags: Source, source: str, notes: list[str]
) -> MatrixThinkerConfig:
    """A native config with override values in place; the head cannot change."""
    head = flags.values.get("head")
    if head is not None and head != config.head:
        raise AblateError(
            f"variant '{flags.variant}' has head={head} but {source} stores head={config.head}; "
            "pick a variant with that head or drop the variant override"
        )
    values = config_values(config)
    changed = {k: v for k, v in flags.values.items() if k in values and k != "head"
               and values[k] != v}
    if not changed:
        return config
    for key, value in changed.items():
        notes.append(f"{key} overridden: stored {values[key]!r}, using {value!r}")
    try:
        return MatrixThinkerConfig(**{**values, **changed})
    except AblateError as err:
        raise AblateError(f"{source} with overrides {changed}: {err}") from err


def _resolve_tokenizer(
    kind: str, target: Path, config: MatrixThinkerConfig, override: str | Path | None,
    required: bool, notes: list[str],
) -> Tokenizer | None:
    folder = target if kind == "native" else target.parent
    V = config.vocab_size
    tokenizer: Tokenizer | None = None
    if override is not None:
        tokenizer = load_tokenizer(override)
    elif any((folder / name).is_file() for name in HF_TOKENIZER_FILES):
        tokenizer = load_tokenizer(folder)
    elif config.specials and len(config.specials) == V - 256:
        tokenizer = ByteTokenizer(config.specials)
        notes.append(f"no tokenizer files: byte tokenizer with the config's specials "
                     f"{config.specials}")
    elif V == 256:
        tokenizer = ByteTokenizer()
    elif len(REFERENCE_SPECIALS) == V - 256:
        tokenizer = ByteTokenizer(REFERENCE_SPECIALS)
        notes.append(f"vocab_size {V} read as 256 bytes + specials {list(REFERENCE_SPECIALS)} "
                     "(the reference byte vocabulary); pass --tokenizer if it used others")
    elif required:
        raise AblateError(
            f"{target}: vocab_size {V} is not a byte vocabulary (256 or 259) and no tokenizer "
            "is saved with it; pass --tokenizer DIR (for GPT-2 BPE checkpoints a directory "
            "written by AutoTokenizer.from_pretrained('gpt2').save_pretrained(DIR))"
        )
    else:
        notes.append(f"no tokenizer for vocab_size {V}: pass --tokenizer DIR to decode text")
    if tokenizer is not None and tokenizer.vocab_size > V:
        raise AblateError(
            f"the tokenizer for {target} has {tokenizer.vocab_size} ids but the model only {V}; "
            "pass the tokenizer the model was trained with"
        )
    return tokenizer
