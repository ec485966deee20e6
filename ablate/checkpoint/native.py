"""The native checkpoint format: a directory in the transformers convention.

    directory/
      config.json        MatrixThinkerConfig (``save_pretrained`` format, so
                         ``MatrixThinker.from_pretrained`` and ``AutoModel`` read it too)
      model.safetensors  the state dict
      tokenizer files    ByteTokenizer JSON or a Hugging Face tokenizer
      ablate_meta.json   provenance (keys below)

``ablate_meta.json``: ``version`` (META_VERSION), ``ablate_version``, ``git_hash`` (HEAD
of the ablate checkout, "unknown" outside one), ``git_dirty`` (bool, null if unknown),
``libraries`` (python, torch, transformers, safetensors, numpy versions), ``created`` (UTC,
ISO 8601), then the caller's keys: ``command``, ``seed``, ``data``, ``steps``, ``metrics``;
a conversion adds ``source``, ``source_sha256``, ``source_format``, ``source_notes``.

A save writes a hidden sibling directory and renames it into place, so an interrupted
save never leaves a half-written checkpoint under the target name.

    >>> save_checkpoint(model, ByteTokenizer(), "checkpoints/run0",
    ...                 metadata={"command": "ablate train exp.toml", "seed": 0})  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import shutil
import uuid
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import PretrainedConfig

import ablate
from ablate.checkpoint.sources import read_json
from ablate.errors import AblateError
from ablate.model import MatrixThinker, MatrixThinkerConfig
from ablate.provenance import git_state
from ablate.tokenizer import ByteTokenizer, Tokenizer

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
META_FILE = "ablate_meta.json"
META_VERSION = 1
PROVENANCE_KEYS = ("version", "ablate_version", "git_hash", "git_dirty", "libraries", "created")
LIBRARIES = ("torch", "transformers", "safetensors", "numpy")
# config.json keys written by transformers itself (4.x wrote torch_dtype, 5.x dtype).
_TRANSFORMERS_KEYS = {"architectures", "transformers_version", "dtype", "torch_dtype", "model_type"}


def provenance() -> dict[str, Any]:
    """What produced a file: package version, git state, library versions, time (UTC)."""
    libraries = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            libraries[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            libraries[name] = "not installed"
    git_hash, dirty = git_state()
    return {
        "version": META_VERSION,
        "ablate_version": ablate.__version__,
        "git_hash": git_hash,
        "git_dirty": dirty,
        "libraries": libraries,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _checked_metadata(metadata: dict[str, Any], directory: Path) -> dict[str, Any]:
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise AblateError(f"metadata key {key!r} for {directory} is not a string")
        try:
            json.dumps(value)
        except (TypeError, ValueError) as err:
            raise AblateError(
                f"metadata['{key}'] for {directory} is not JSON-serialisable ({err}); "
                "pass strings, numbers, lists and dicts"
            ) from err
    reserved = sorted(set(metadata) & set(PROVENANCE_KEYS))
    if reserved:
        # Re-saving a loaded checkpoint passes its old provenance back: this save's wins.
        logger.info("metadata keys %s are replaced by this save's provenance", reserved)
    return {**metadata, **provenance()}


def save_checkpoint(
    model: MatrixThinker,
    tokenizer: Tokenizer,
    directory: str | Path,
    *,
    metadata: dict[str, Any],
    overwrite: bool = True,
) -> Path:
    """Write ``model`` and ``tokenizer`` as a native checkpoint; returns the directory.

    An existing ablate checkpoint at ``directory`` is replaced (unless ``overwrite`` is
    False); any other non-empty directory is refused rather than deleted.
    """
    destination = Path(directory)
    if destination.exists():
        if not destination.is_dir():
            raise AblateError(f"{destination} is a file; pass a directory path to save into")
        if any(destination.iterdir()):
            if not (destination / META_FILE).is_file():
                raise AblateError(
                    f"{destination} exists and is not an ablate checkpoint (no {META_FILE}); "
                    "choose a new directory or empty this one"
                )
            if not overwrite:
                raise AblateError(
                    f"{destination} already holds a checkpoint; pass --overwrite "
                    "(overwrite=True) or choose a new directory"
                )
    vocab = model.config.vocab_size
    if tokenizer.vocab_size > vocab:
        raise AblateError(
            f"tokenizer has {tokenizer.vocab_size} ids but the model only {vocab}; save "
            f"{destination} with the tokenizer the model was trained with"
        )
    meta = _checked_metadata(metadata, destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial-{uuid.uuid4().hex[:8]}")
    partial.mkdir()
    config = copy.deepcopy(model.config)
    if isinstance(tokenizer, ByteTokenizer):
        # The config names the byte specials, so the vocabulary is known without the file.
        config.specials = list(tokenizer.specials)
    try:
        config.save_pretrained(partial)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(partial / WEIGHTS_FILE), metadata={"format": "pt"})
        tokenizer.save(partial)
        (partial / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _move_into_place(partial, destination)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("saved checkpoint %s", destination)
    return destination


def _move_into_place(partial: Path, destination: Path) -> None:
    if not destination.exists():
        os.replace(partial, destination)
        return
    # Two renames: the old checkpoint stays whole until the new one is complete.
    retired = destination.with_name(f".{destination.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(destination, retired)
    os.replace(partial, destination)
    shutil.rmtree(retired, ignore_errors=True)


def is_native(directory: Path) -> bool:
    return (directory / CONFIG_FILE).is_file() and (directory / WEIGHTS_FILE).is_file()


def read_native(
    directory: Path,
) -> tuple[MatrixThinkerConfig, dict[str, torch.Tensor], dict[str, Any], list[str]]:
    """(config, state dict, metadata, notes) of the native checkpoint in ``directory``."""
    notes: list[str] = []
    config = read_native_config(directory / CONFIG_FILE)
    weights = directory / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except Exception as err:  # safetensors raises its own error type for damaged files
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise AblateError(
            f"{weights}: cannot be read as safetensors ({weights.stat().st_size} bytes; "
            f"{reason}); the file is truncated or corrupt: save or copy the checkpoint again"
        ) from err
    meta_file = directory / META_FILE
    metadata: dict[str, Any] = {}
    if meta_file.is_file():
        metadata = read_json(meta_file)
        version = metadata.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version > META_VERSION:
            raise AblateError(
                f"{meta_file}: version {version!r} is not supported (this ablate reads up to "
                f"{META_VERSION}); upgrade ablate or re-save the checkpoint"
            )
    else:
        notes.append(f"no {META_FILE}: provenance unknown (saved outside ablate?)")
    return config, state, metadata, notes


def read_native_config(path: Path) -> MatrixThinkerConfig:
    """A ``MatrixThinkerConfig`` from a native ``config.json``; unknown keys are errors."""
    data = read_json(path)
    if data.get("model_type") != MatrixThinkerConfig.model_type:
        raise AblateError(
            f"{path}: model_type {data.get('model_type')!r} is not "
            f"'{MatrixThinkerConfig.model_type}'; pass a Matrix Thinker checkpoint directory"
        )
    allowed = set(MatrixThinkerConfig().to_dict()) | set(PretrainedConfig().to_dict())
    unknown = sorted(set(data) - allowed - _TRANSFORMERS_KEYS)
    if unknown:
        raise AblateError(
            f"{path}: unknown config keys {unknown}; remove them (a Matrix Thinker config "
            "has mat_dim, n_layers, n_heads, n_probes, vocab_size, max_len, attention, ...)"
        )
    try:
        return MatrixThinkerConfig.from_dict(data)
    except AblateError as err:
        raise AblateError(f"{path}: {err}") from err
    except (TypeError, ValueError) as err:
        raise AblateError(f"{path}: invalid config ({err}); fix the value it names") from err
