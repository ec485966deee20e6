"""The argument groups every trainer shares: the model, its data budget, the optimiser.

``TrainConfig`` (Matrix Thinkers) and ``CodiTrainConfig`` (matrix-CODI) both derive from
these dataclasses, so a setting has one name, one check and one CLI flag in both; each
trainer only redeclares the defaults of its own recipe (``ablate.config.default``).
``ablate.cli.options`` turns the fields into the flags of ``ablate train`` and
``ablate codi train``.

    >>> from ablate.train import TrainConfig
    >>> TrainConfig(mat_dim=8, n_heads=3)                                  # doctest: +SKIP
    AblateError: n_heads=3 does not divide mat_dim=8; ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ablate.config import ConfigBase, arg, names_in
from ablate.errors import AblateError

if TYPE_CHECKING:
    from ablate.model import MatrixThinkerConfig

BETAS = (0.9, 0.98)  # spec §7.2

# The model's names live in ablate.model.config, which loads transformers: read them on
# the first check, so the flags (and `ablate train --help`) need no torch.
MODEL_CONFIG = "ablate.model.config"


@dataclass(frozen=True)
class ModelArgs(ConfigBase):
    """The Matrix Thinker to build (spec §3): everything but the vocabulary."""

    PANEL: ClassVar[str] = "Model"

    attention: str = arg("frobenius", help="Attention: frobenius | matrix3d.",
                         choices=names_in(MODEL_CONFIG, "ATTENTIONS"))
    head: str = arg("multiprobe", help="Output head: multiprobe | collapse.",
                    choices=names_in(MODEL_CONFIG, "HEADS"))
    mat_dim: int = arg(8, help="Matrix size d.", min_value=1)
    n_layers: int = arg(2, help="Thinking layers.", flag="--layers", min_value=1)
    n_heads: int = arg(2, help="Attention heads (must divide d).", flag="--heads", min_value=1)
    n_probes: int = arg(0, help="MultiProbe probes K (0: d).", flag="--probes", min_value=0)
    n_iterations: int = arg(4, help="Iterations T of the weight-tied loop.",
                            flag="--iterations", min_value=0)
    embedding: str = arg("outer", help="Starting embedding: outer | rank_r | bigram | "
                         "pairwise.", choices=names_in(MODEL_CONFIG, "EMBEDDINGS"))
    embedding_rank: int = arg(1, help="Rank r of the rank_r embedding.", min_value=1)
    max_len: int = arg(256, help="Positional table size (the longest sequence).", min_value=1)
    dropout: float = arg(0.0, help="Dropout probability while training.", min_value=0.0)

    def validate(self) -> None:
        super().validate()
        if self.dropout >= 1.0:
            raise AblateError(f"dropout={self.dropout!r} must be in [0, 1)")
        if self.mat_dim % self.n_heads:
            raise AblateError(f"n_heads={self.n_heads} does not divide mat_dim={self.mat_dim}; "
                              "choose --heads among the divisors of --mat-dim")

    def model_config(self, vocab_size: int, specials: list[str]) -> MatrixThinkerConfig:
        """The model these arguments describe, for a tokenizer of ``vocab_size`` ids."""
        from ablate.model import MatrixThinkerConfig

        return MatrixThinkerConfig(
            mat_dim=self.mat_dim, n_layers=self.n_layers, n_heads=self.n_heads,
            n_probes=self.n_probes or self.mat_dim, vocab_size=vocab_size,
            max_len=self.max_len, dropout=self.dropout, attention=self.attention,
            head=self.head, embedding=self.embedding, embedding_rank=self.embedding_rank,
            n_iterations=self.n_iterations, specials=list(specials))


@dataclass(frozen=True)
class DataArgs(ConfigBase):
    """How much data a run uses: the training items and the held-out ones."""

    PANEL: ClassVar[str] = "Data"

    train_items: int = arg(0, help="Cap on training items or documents (0: all).", min_value=0)
    val_items: int = arg(200, help="Held-out items evaluated during or after training.",
                         aliases=("--eval-items",), min_value=1)


@dataclass(frozen=True)
class OptimArgs(ConfigBase):
    """AdamW with linear warmup, clipping and a seed (each trainer has its own schedule)."""

    PANEL: ClassVar[str] = "Optimisation"

    steps: int = arg(300, help="Optimiser steps.", min_value=1)
    batch_size: int = arg(8, help="Sequences per step.", min_value=1)
    lr: float = arg(3e-3, help="Peak learning rate.", min_value=0.0)
    warmup: int = arg(30, help="Linear warmup steps.", min_value=0)
    weight_decay: float = arg(0.01, help="AdamW weight decay.", min_value=0.0)
    grad_clip: float = arg(1.0, help="Clip of the gradient norm.", min_value=0.0)
    betas: list[float] = arg(default_factory=lambda: list(BETAS), cli=False,
                             help="AdamW betas (config files only).")
    seed: int = arg(0, help="Seed of the initial weights and the data order.", min_value=0)

    def validate(self) -> None:
        super().validate()
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise AblateError(f"betas={self.betas} must be two numbers in [0, 1), e.g. "
                              "[0.9, 0.98]")
