"""Matrix Thinker models (spec: shared/spec/matrix_thinker.md) with named hook points.

    >>> from ablate.model import MatrixThinker, MatrixThinkerConfig
    >>> model = MatrixThinker(MatrixThinkerConfig(mat_dim=8, n_layers=2, n_heads=2))
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModel

from ablate.model.cache import DecodeCache, SharedPrefixCache
from ablate.model.config import VARIANTS, MatrixThinkerConfig
from ablate.model.hooks import SITE_ALIASES, hook_names, resolve_site
from ablate.model.thinker import MatrixThinker, ThinkerOutput

AutoConfig.register("matrix_thinker", MatrixThinkerConfig, exist_ok=True)
AutoModel.register(MatrixThinkerConfig, MatrixThinker, exist_ok=True)

__all__ = [
    "VARIANTS",
    "SITE_ALIASES",
    "DecodeCache",
    "MatrixThinker",
    "MatrixThinkerConfig",
    "SharedPrefixCache",
    "ThinkerOutput",
    "hook_names",
    "resolve_site",
]
