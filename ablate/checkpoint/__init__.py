"""Checkpoints: load native directories and research ``best.pt`` files, save, convert, inspect.

First stage of the pipeline: everything downstream gets a ``MatrixThinker`` in eval mode,
its tokenizer, and a ``CheckpointInfo`` that says what was loaded and what was assumed.

* ``native``: directory format (config.json + model.safetensors + tokenizer + ablate_meta.json)
* ``research``: reading ``.pt`` state dicts and the shapes in them
* ``settings``: what shapes cannot tell, from overrides, sidecar files and defaults
* ``weights``: finite, strictly matching weights -> model
* ``loading``: ``load_checkpoint``; ``convert``: research -> native; ``summary``: inspect

    >>> from ablate.checkpoint import load_checkpoint
    >>> model, tokenizer, info = load_checkpoint("checkpoints/multiprobe-seed0")  # doctest: +SKIP
"""

from __future__ import annotations

from ablate.checkpoint.convert import Conversion, convert_checkpoint, file_sha256
from ablate.checkpoint.loading import (
    CONFIG_KEYS,
    REFERENCE_SPECIALS,
    CheckpointInfo,
    Loaded,
    config_values,
    load_checkpoint,
    read_checkpoint,
)
from ablate.checkpoint.native import META_FILE, META_VERSION, provenance, save_checkpoint
from ablate.checkpoint.settings import OVERRIDE_KEYS
from ablate.checkpoint.summary import INSPECT_KEYS, inspect_checkpoint, iteration_ranks, probe_batch

__all__ = [
    "CONFIG_KEYS",
    "INSPECT_KEYS",
    "META_FILE",
    "META_VERSION",
    "OVERRIDE_KEYS",
    "REFERENCE_SPECIALS",
    "CheckpointInfo",
    "Conversion",
    "Loaded",
    "config_values",
    "convert_checkpoint",
    "file_sha256",
    "inspect_checkpoint",
    "iteration_ranks",
    "load_checkpoint",
    "probe_batch",
    "provenance",
    "read_checkpoint",
    "save_checkpoint",
]
