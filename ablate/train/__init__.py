"""Training Matrix Thinkers: the pure-python API behind ``ablate train``.

``train(config)`` builds the model a ``TrainConfig`` describes, trains it on documents
from the synthetic task, GSM8K or text files (``ablate.train.data``), validates it on
held-out data (``ablate.train.validation``) and saves it with
``ablate.checkpoint.save_checkpoint``; an interrupted run resumes from its training
state (``ablate.train.loop``).

    >>> from ablate.train import TrainConfig, train
    >>> result = train(TrainConfig(mat_dim=8, steps=300, out="checkpoints/tiny"))  # doctest: +SKIP
    >>> result.final["answer_accuracy"], result.final["bpb"]                    # doctest: +SKIP
"""

from __future__ import annotations

from ablate.lazy import lazy_exports

# Public name -> the module defining it, imported on first use: the config and its flags
# (``ablate train --help``) need no torch.
_EXPORTS = {
    "TrainConfig": "config", "parse_data": "config", "variant_parts": "config",
    "STATE_FILE": "loop", "TrainProgress": "loop", "TrainResult": "loop",
    "lr_multiplier": "loop", "train": "loop",
    "bits_per_byte": "validation",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
