"""Checking a state dict against a config and building the model from it, strictly.

Both checkpoint formats end here: the tensors must be finite, every key the config
implies must be present with its shape, and no other key may appear. Problems become one
``AblateError`` line that names the file and the first offending keys.

    >>> model, notes = build_model(config, state, source="runs/a/best.pt")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from ablate.errors import AblateError, shown
from ablate.model import MatrixThinker, MatrixThinkerConfig

logger = logging.getLogger(__name__)

# How many offending keys an error message lists before "... (N in all)".
SHOWN_KEYS = 3


def _listing(keys: list[str]) -> str:
    listed = ", ".join(shown(k) for k in keys[:SHOWN_KEYS])
    return listed if len(keys) <= SHOWN_KEYS else f"{listed}, ... ({len(keys)} in all)"


def check_tensors(state: Mapping[str, object], source: str) -> list[str]:
    """Raise unless every value is a finite tensor; return notes on dtypes that
    ``as_float32`` will cast. The first offending key in state-dict order is named."""
    notes: list[str] = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise AblateError(
                f"{source}: entry '{shown(key)}' is a {type(value).__name__}, not a tensor; "
                "a checkpoint must map parameter names to tensors (save model.state_dict())"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            n_nan = int(torch.isnan(value).sum())
            n_inf = int(torch.isinf(value).sum())
            raise AblateError(
                f"{source}: weight '{shown(key)}' has {n_nan} NaN and {n_inf} inf entries of "
                f"{value.numel()}; the file is corrupt or training diverged: use an earlier "
                "checkpoint"
            )
    dtypes = {str(v.dtype) for v in state.values() if v.is_floating_point()}
    odd = sorted(dtypes - {"torch.float32"})
    if odd:
        notes.append(f"weights stored as {', '.join(odd)} were cast to float32 (spec: float32)")
    return notes


def as_float32(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with floating tensors in float32 (other dtypes untouched)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def build_model(
    config: MatrixThinkerConfig, state: Mapping[str, torch.Tensor], source: str
) -> MatrixThinker:
    """A ``MatrixThinker`` for ``config`` holding exactly ``state`` (strict), in eval mode.

    The constructor's random initialisation runs inside ``fork_rng``, so loading leaves
    the global RNG where it was (a meta-device build would skip the draws but takes
    several times longer for these many small tensors).
    """
    with torch.random.fork_rng(devices=[]):
        model = MatrixThinker(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    resized = [f"{k} {given[k]} vs {expected[k]}" for k in expected
               if k in given and given[k] != expected[k]]
    if missing or unexpected or resized:
        problems = []
        if missing:
            problems.append(f"missing keys {_listing(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_listing(unexpected)}")
        if resized:
            problems.append(f"shape mismatches (file vs model) {_listing(resized)}")
        raise AblateError(
            f"{source}: the weights do not fit a {config.variant} model with "
            f"{_describe(config)}: {'; '.join(problems)}; fix the config (mat_dim, n_layers, "
            "n_probes, head, embedding) or pass the checkpoint it describes"
        )
    model.load_state_dict(as_float32(state), strict=True, assign=True)
    return model.eval()


def _describe(config: MatrixThinkerConfig) -> str:
    return (f"d={config.mat_dim}, n_layers={config.n_layers}, n_probes={config.n_probes}, "
            f"vocab_size={config.vocab_size}, max_len={config.max_len}, head={config.head}, "
            f"embedding={config.embedding}")
