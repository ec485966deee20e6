"""ablate: causal rank ablations for Matrix Thinker models.

Data flow: checkpoint -> model -> hooks/interventions -> tasks -> evaluation ->
results store -> statistics -> plots -> report.

    >>> from ablate.checkpoint import load_checkpoint   # doctest: +SKIP
    >>> model, tokenizer, info = load_checkpoint("checkpoints/multiprobe-seed0")
"""

from __future__ import annotations

__version__ = "0.1.0"
