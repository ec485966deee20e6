"""ablate: causal rank ablations for Matrix Thinker models.

Data flow: checkpoint -> model -> hooks/interventions -> tasks -> evaluation ->
results store -> statistics -> plots -> report.

    >>> from ablate.checkpoint import load_checkpoint   # doctest: +SKIP
    >>> model, tokenizer, info = load_checkpoint("checkpoints/multiprobe-seed0")

``import ablate`` imports neither torch nor transformers; it registers the Matrix Thinker
with transformers' AutoConfig/AutoModel as soon as transformers is imported
(``ablate.auto_classes``), so ``AutoModel.from_pretrained(checkpoint_dir)`` works after it.
"""

from __future__ import annotations

from ablate.auto_classes import register_when_transformers_loads

__version__ = "0.1.0"

register_when_transformers_loads()
