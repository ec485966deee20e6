"""Statistics for rank ablations over training seeds x shared problems (docs: statistics.md).

Pure functions over (n_seeds, n_items) arrays or tidy record tables, each taking an
explicit ``numpy.random.Generator``; the only package that imports statsmodels. Every
contrast reports E1 (these checkpoints: problems resampled) and E3 (a new training run:
the two-way seeds-and-problems interval). The research questions that combine them into
claims live in ``ablate.questions``.

    >>> from ablate.stats import paired_difference
    >>> result = paired_difference(acc_a, acc_b, rng=np.random.default_rng(0))  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

# Names resolve on first use (PEP 562), so importing one light module such as
# ``ablate.stats.pvalues`` (experiment parsing does) does not load scipy and statsmodels.
_MODULES = {
    "bits_per_byte": "controls", "bits_per_byte_contrast": "controls",
    "control_contrast": "controls", "random_mean": "controls", "svd_vs_random": "controls",
    "depth_agreement": "depth", "depth_association": "depth",
    "TwoWayResult": "intervals", "interval_from_replicates": "intervals",
    "mean_interval": "intervals", "paired_difference": "intervals",
    "two_way_interval": "intervals", "weighted_mean": "intervals",
    "compare_heads_paired": "iterations", "compare_heads_unpaired": "iterations",
    "direction_flip": "iterations", "erank_trend": "iterations",
    "benjamini_hochberg": "multiplicity", "holm": "multiplicity",
    "mde_table": "power", "minimum_detectable_effect": "power",
    "variance_components": "power",
    "accuracy_trend": "trend", "unablated_contrast": "trend",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module 'ablate.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ablate.stats.{_MODULES[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "TwoWayResult",
    "accuracy_trend",
    "benjamini_hochberg",
    "bits_per_byte",
    "bits_per_byte_contrast",
    "compare_heads_paired",
    "compare_heads_unpaired",
    "control_contrast",
    "depth_agreement",
    "depth_association",
    "direction_flip",
    "erank_trend",
    "holm",
    "interval_from_replicates",
    "mde_table",
    "mean_interval",
    "minimum_detectable_effect",
    "paired_difference",
    "random_mean",
    "svd_vs_random",
    "two_way_interval",
    "unablated_contrast",
    "variance_components",
    "weighted_mean",
]
