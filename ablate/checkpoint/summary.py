"""What ``ablate inspect`` reports about a checkpoint, as JSON-ready values.

The effective rank per iteration is measured on a small deterministic batch: a fixed
text through the checkpoint's tokenizer, or seeded random ids when there is none.

    >>> report = inspect_checkpoint(load_checkpoint("runs/a"), n_tokens=32)  # doctest: +SKIP
    >>> report["erank_per_iter"]   # T + 1 values: M(0), M(1), ..., M(T)   # doctest: +SKIP

``inspect_checkpoint`` keys (``INSPECT_KEYS``): ``format``, ``path``, ``variant``,
``config``, ``n_params``, ``metadata``, ``notes``, ``settings`` (as in ``CheckpointInfo``:
each fact the weights do not give, with its value, source and how it was decided);
``tokenizer`` (its repr, or null); ``n_iterations`` (T used); ``batch`` (``source``
"text" | "random", ``shape`` [B, L], ``seed``); ``erank_per_iter`` (length T + 1: mean
effective rank over all B·L positions of M(0..T) before the final norm, float32 states,
``ablate.rank.effective_rank``).
"""

from __future__ import annotations

from typing import Any

import torch

from ablate.checkpoint.loading import Loaded
from ablate.errors import AblateError
from ablate.model import MatrixThinker
from ablate.rank import effective_rank
from ablate.tokenizer import Tokenizer

INSPECT_KEYS = ("format", "path", "variant", "config", "n_params", "metadata", "notes",
                "settings", "tokenizer", "n_iterations", "batch", "erank_per_iter")
PROBE_ROWS = 2
PROBE_TEXT = (
    "Each token carries a small matrix. Every pass of the thinking layers multiplies it, "
    "gates it and writes into it, and a readout probes what is left of it at the end. "
)


def probe_batch(
    tokenizer: Tokenizer | None, vocab_size: int, n_tokens: int, seed: int = 0
) -> tuple[torch.Tensor, str]:
    """Token ids (PROBE_ROWS, n_tokens) int64 and their source ("text" or "random").

    Text is tiled to length and split into rows, so row 1 continues row 0.
    """
    ids = tokenizer.encode(PROBE_TEXT) if tokenizer is not None else []
    if ids and max(ids) < vocab_size:
        needed = PROBE_ROWS * n_tokens
        tiled = (ids * (needed // len(ids) + 1))[:needed]
        return torch.tensor(tiled, dtype=torch.long).view(PROBE_ROWS, n_tokens), "text"
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (PROBE_ROWS, n_tokens), generator=generator), "random"


@torch.no_grad()
def iteration_ranks(model: MatrixThinker, ids: torch.Tensor, n_iterations: int) -> list[float]:
    """Mean effective rank over positions of M(0..T): T + 1 floats."""
    device = next(model.parameters()).device
    out = model(ids.to(device), n_iterations, return_states=True, head=False)
    states = out.states[: n_iterations + 1]  # head=False appends the head input last
    return [float(effective_rank(M.float()).mean()) for M in states]


def inspect_checkpoint(
    loaded: Loaded, *, n_iterations: int | None = None, n_tokens: int = 32, seed: int = 0
) -> dict[str, Any]:
    """The ``INSPECT_KEYS`` report for a loaded checkpoint."""
    config = loaded.model.config
    T = config.n_iterations if n_iterations is None else n_iterations
    if T < 0:
        raise AblateError(f"--iterations {T} must be >= 0 (0 measures only M(0))")
    if not 1 <= n_tokens <= config.max_len:
        raise AblateError(
            f"--tokens {n_tokens} must be between 1 and the model's max_len {config.max_len}"
        )
    ids, source = probe_batch(loaded.tokenizer, config.vocab_size, n_tokens, seed)
    report = loaded.info.to_dict()
    report.update(
        tokenizer=None if loaded.tokenizer is None else repr(loaded.tokenizer),
        n_iterations=T,
        batch={"source": source, "shape": list(ids.shape), "seed": seed},
        erank_per_iter=iteration_ranks(loaded.model, ids, T),
    )
    assert tuple(report) == INSPECT_KEYS, tuple(report)
    return report
