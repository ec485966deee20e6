"""Matrix-CODI: continuous d×d latent thoughts, trained by self-distillation, and their rank.

Flow: ``sequences`` (token layout, padded batches) -> ``native`` (latent loop on a Matrix
Thinker, CODI losses) / ``research`` + ``bottleneck`` (research GPT-2 checkpoints), both
with a hook point ``latent.{j}`` per thought -> ``training`` (CODI or curriculum) ->
``saving`` (native checkpoints) / ``loading`` (the one loader of either kind) ->
``evaluation`` (greedy answers scored through the task, chance) -> ``records`` (a CODI
job's conditions over its items as per-item records; ``ablate run`` runs CODI checkpoints,
``model = "codi"``, like any other) and ``study_file`` (old ``kind = "codi_study"`` files,
translated into experiments).

    >>> from ablate.codi import load_codi, evaluate_items
    >>> codi = load_codi("checkpoints/codi-synthetic")                  # doctest: +SKIP
    >>> outcomes = evaluate_items(codi, items, n_latents=6)              # doctest: +SKIP
"""

from __future__ import annotations

from ablate.lazy import lazy_exports

# Public name -> the module defining it, imported on first use: reading a study file
# (``ablate.codi.study_file``, e.g. ``ablate validate --no-checkpoints``) needs no torch.
_EXPORTS = {
    "Outcome": "evaluation", "Solution": "evaluation", "accuracy": "evaluation",
    "evaluate_conditions": "evaluation", "evaluate_items": "evaluation",
    "most_frequent_answer": "evaluation",
    "PROJECTIONS": "native", "CodiSettings": "native", "LatentProjection": "native",
    "NativeCodi": "native",
    "load_codi": "saving", "save_codi": "saving", "load_codi_model": "loading",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
