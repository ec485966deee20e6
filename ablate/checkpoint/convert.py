"""Converting a research checkpoint to the native format, checked by identical logits.

The native copy stores everything the research file could not say (attention type,
n_heads, tokenizer), so it loads later without flags; its metadata records the source
file, its sha256, and where each of those facts came from (``source_settings``), so a
fact assumed at conversion stays marked assumed wherever the copy is loaded.

The logit check compares the saved copy with the model ablate built from the research
file: it proves the copy is faithful, not that the config is the research run's. That
only the sources of the facts can say; ``Conversion.assumed`` lists those nobody stated.

    >>> result = convert_checkpoint("runs/exp_3d_attn/best.pt", "checkpoints/attn3d",
    ...                             overrides={"attention": "matrix3d"})  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ablate.checkpoint.loading import CheckpointInfo, load_checkpoint
from ablate.checkpoint.native import save_checkpoint
from ablate.checkpoint.summary import probe_batch
from ablate.errors import AblateError

logger = logging.getLogger(__name__)

VERIFY_TOKENS = 16  # positions per row of the verification batch (fewer if max_len is smaller)
VERIFY_MAX_ITERATIONS = 8  # the check runs at T = min(the config's n_iterations, this)


@dataclass
class Conversion:
    """The converted checkpoint and how it was checked."""

    path: Path
    info: CheckpointInfo  # of the converted (native) checkpoint
    source_sha256: str
    verified_shape: tuple[int, int]  # (B, L) of the batch whose logits were compared
    n_iterations: int  # T of the comparison
    assumed: list[str]  # facts taken from research defaults (--assume-research-defaults)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_checkpoint(
    source: str | Path,
    destination: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    overrides_from: str = "overrides",
) -> Conversion:
    """Load the research checkpoint ``source``, save it natively, and check that the saved
    copy gives bit-identical logits on a small batch at T = the config's n_iterations
    (at most ``VERIFY_MAX_ITERATIONS``).
    ``overrides`` and ``overrides_from`` are ``load_checkpoint``'s."""
    original = load_checkpoint(source, overrides=overrides, overrides_from=overrides_from)
    if original.info.format != "research":
        raise AblateError(
            f"{original.info.path} is already a native checkpoint; copy the directory instead "
            "of converting it"
        )
    source_file = Path(original.info.path)
    sha = file_sha256(source_file)
    meta = {
        **(metadata or {}),
        "source": str(source_file.resolve()),
        "source_sha256": sha,
        "source_format": "research",
        "source_notes": original.info.notes,
        "source_metadata": original.info.metadata,
        "source_settings": original.info.settings,
    }
    config = original.model.config
    ids, _ = probe_batch(original.tokenizer, config.vocab_size,
                         min(VERIFY_TOKENS, config.max_len))
    T = min(config.n_iterations, VERIFY_MAX_ITERATIONS)
    with torch.no_grad():
        before = original.model(ids, T).logits
    if not bool(torch.isfinite(before).all()):
        raise AblateError(
            f"{source_file}: its weights give non-finite logits (inf or NaN) at T={T}; the "
            "file is corrupt or training diverged: convert an earlier checkpoint"
        )
    destination = save_checkpoint(original.model, original.tokenizer, destination,
                                  metadata=meta, overwrite=overwrite)
    converted = load_checkpoint(destination)
    with torch.no_grad():
        after = converted.model(ids, T).logits
    if not torch.equal(before, after):
        shutil.rmtree(destination, ignore_errors=True)
        difference = float((before - after).abs().max())
        raise AblateError(
            f"converting {source_file} to {destination} changed the logits (max |diff| "
            f"{difference:.3g} at T={T}); the copy was removed: report this as an ablate bug"
        )
    logger.info("converted %s -> %s (sha256 %s)", source_file, destination, sha[:12])
    return Conversion(destination, converted.info, sha, tuple(ids.shape), T,
                      original.info.assumed)
