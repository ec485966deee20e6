"""Matrix-CODI: continuous d×d latent thoughts, trained by self-distillation, and their rank.

Flow: ``sequences`` (token layout, padded batches) -> ``native`` (latent loop on a Matrix
Thinker, CODI losses) / ``research`` + ``bottleneck`` (research GPT-2 checkpoints) ->
``training`` (CODI or curriculum) -> ``saving`` (native checkpoints) -> ``evaluation``
(greedy answers, CODI scoring, chance) -> ``study`` + ``study_config`` (rank dynamics and
rank cuts on the latents, written as per-item records to a run directory).

    >>> from ablate.codi import load_codi, evaluate_items
    >>> codi = load_codi("checkpoints/codi-synthetic")                  # doctest: +SKIP
    >>> outcomes = evaluate_items(codi, items, n_latents=6)              # doctest: +SKIP
"""

from __future__ import annotations

from ablate.codi.evaluation import (
    Outcome,
    Solution,
    accuracy,
    evaluate_conditions,
    evaluate_items,
    most_frequent_answer,
)
from ablate.codi.native import PROJECTIONS, CodiSettings, LatentProjection, NativeCodi
from ablate.codi.saving import load_codi, save_codi

__all__ = [
    "PROJECTIONS",
    "CodiSettings",
    "LatentProjection",
    "NativeCodi",
    "Outcome",
    "Solution",
    "accuracy",
    "evaluate_conditions",
    "evaluate_items",
    "load_codi",
    "most_frequent_answer",
    "save_codi",
]
