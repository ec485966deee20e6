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

from ablate.stats.controls import (
    bits_per_byte,
    bits_per_byte_contrast,
    control_contrast,
    random_mean,
    svd_vs_random,
)
from ablate.stats.depth import depth_agreement, depth_association
from ablate.stats.intervals import (
    TwoWayResult,
    interval_from_replicates,
    mean_interval,
    paired_difference,
    two_way_interval,
    weighted_mean,
)
from ablate.stats.iterations import (
    compare_heads_paired,
    compare_heads_unpaired,
    direction_flip,
    erank_trend,
)
from ablate.stats.multiplicity import benjamini_hochberg, holm
from ablate.stats.power import mde_table, minimum_detectable_effect, variance_components
from ablate.stats.trend import accuracy_trend, unablated_contrast

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
