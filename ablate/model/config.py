"""Configuration of a Matrix Thinker: everything a state dict cannot say about a model.

A config holds strings, numbers and lists only, so it round-trips through JSON (it is a
``transformers.PretrainedConfig``, saved as ``config.json`` by ``save_pretrained``).

    >>> cfg = MatrixThinkerConfig(mat_dim=8, n_layers=2, n_heads=2, n_probes=12, vocab_size=259)
    >>> cfg.variant
    'round2_frobenius_multiprobe'
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from ablate.errors import AblateError

ATTENTIONS = ("frobenius", "matrix3d")
HEADS = ("multiprobe", "collapse")
EMBEDDINGS = ("outer", "rank_r", "bigram", "pairwise")

# Research variant name -> (attention, head). (d) byte is (a) with a byte vocabulary.
VARIANTS = {
    "round2_frobenius_multiprobe": ("frobenius", "multiprobe"),
    "byte_frobenius_multiprobe": ("frobenius", "multiprobe"),
    "round1_frobenius_collapse": ("frobenius", "collapse"),
    "attn3d_multiprobe": ("matrix3d", "multiprobe"),
}
CONFIG_VERSION = 1


class MatrixThinkerConfig(PretrainedConfig):
    """Hyper-parameters of a Matrix Thinker (spec §3, §7.4).

    ``attention``: "frobenius" (variants a, b, d) or "matrix3d" (c). ``head``: "multiprobe"
    (a, c, d) or "collapse" (b). ``embedding``: "outer" is the research rank-1 outer
    product; the others are the contextual starting embeddings of ``ablate.model.embedding``.
    ``n_iterations`` is only the default T; every forward call may pass its own.
    """

    model_type = "matrix_thinker"

    def __init__(
        self,
        mat_dim: int = 32,
        n_layers: int = 8,
        n_heads: int = 8,
        n_probes: int | None = 32,
        vocab_size: int = 256,
        max_len: int = 512,
        dropout: float = 0.1,
        attention: str = "frobenius",
        head: str = "multiprobe",
        embedding: str = "outer",
        embedding_rank: int = 1,
        n_iterations: int = 8,
        specials: list[str] | None = None,
        ablate_config_version: int = CONFIG_VERSION,
        **kwargs: Any,
    ) -> None:
        self.mat_dim = int(mat_dim)
        self.n_layers = int(n_layers)
        self.n_heads = int(n_heads)
        self.n_probes = int(n_probes) if n_probes else self.mat_dim
        self.vocab_size = int(vocab_size)
        self.max_len = int(max_len)
        self.dropout = float(dropout)
        self.attention = attention
        self.head = head
        self.embedding = embedding
        self.embedding_rank = int(embedding_rank)
        self.n_iterations = int(n_iterations)
        self.specials = list(specials or [])
        self.ablate_config_version = int(ablate_config_version)
        # Before PretrainedConfig.__init__: its own validation reads head_dim, which
        # divides by n_heads, so a bad value must stop here with a readable error.
        self.validate()
        super().__init__(**kwargs)
        self.validate()

    def validate(self) -> None:
        """Raise ``AblateError`` naming the first inconsistent value and how to fix it."""
        if self.attention not in ATTENTIONS:
            raise AblateError(
                f"attention '{self.attention}' is not one of {ATTENTIONS}: set attention "
                "to 'frobenius' (rounds 1, 2, byte) or 'matrix3d' (3D attention)"
            )
        if self.head not in HEADS:
            raise AblateError(f"head '{self.head}' is not one of {HEADS}")
        if self.embedding not in EMBEDDINGS:
            raise AblateError(f"embedding '{self.embedding}' is not one of {EMBEDDINGS}")
        for name in ("mat_dim", "n_layers", "n_heads", "vocab_size", "max_len"):
            if getattr(self, name) < 1:
                raise AblateError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.mat_dim % self.n_heads:
            raise AblateError(
                f"n_heads={self.n_heads} does not divide mat_dim={self.mat_dim}: heads are "
                "row blocks of height mat_dim/n_heads; choose a divisor of mat_dim"
            )
        if self.embedding_rank < 1:
            raise AblateError(f"embedding_rank={self.embedding_rank} must be >= 1")
        if self.n_iterations < 0:
            raise AblateError(f"n_iterations={self.n_iterations} must be >= 0")
        if not 0.0 <= self.dropout <= 1.0:  # also refuses NaN
            raise AblateError(f"dropout={self.dropout} must lie in [0, 1]")

    @property
    def head_dim(self) -> int:
        return self.mat_dim // self.n_heads

    @property
    def variant(self) -> str:
        """The research variant this config reproduces, or "custom"."""
        if self.embedding != "outer":
            return "custom"
        if self.attention == "matrix3d":
            return "attn3d_multiprobe" if self.head == "multiprobe" else "custom"
        if self.head == "collapse":
            return "round1_frobenius_collapse"
        if self.vocab_size == 256:
            return "byte_frobenius_multiprobe"
        return "round2_frobenius_multiprobe"

    @classmethod
    def for_variant(cls, variant: str, **overrides: Any) -> MatrixThinkerConfig:
        """A config for a research variant name (``VARIANTS``), with overrides."""
        if variant not in VARIANTS:
            from ablate.errors import unknown_name_error

            raise unknown_name_error("variant", variant, VARIANTS)
        attention, head = VARIANTS[variant]
        return cls(attention=attention, head=head, **overrides)
