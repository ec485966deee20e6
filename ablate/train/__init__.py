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

from ablate.train.config import TrainConfig, parse_data, variant_parts
from ablate.train.loop import STATE_FILE, TrainProgress, TrainResult, lr_multiplier, train
from ablate.train.validation import bits_per_byte

__all__ = [
    "STATE_FILE",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "bits_per_byte",
    "lr_multiplier",
    "parse_data",
    "train",
    "variant_parts",
]
