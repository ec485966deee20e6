"""Effective rank of the states an evaluation computes, averaged per item over positions.

Ranks come from the states the forward pass returns under a condition's hooks, so they
show the intervention; they are computed in float64 from float32 inputs with autocast off
(``ablate.rank``), also when the model runs in bf16.

    >>> sums = RankSums(n_items=2, n_states=3)
    >>> sums.add(position_eranks(states, rows, cols), item=rows)   # doctest: +SKIP
    >>> sums.means()                                                # doctest: +SKIP
    [[1.0, 2.3, 2.9], [1.0, 2.1, 3.0]]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ablate.rank import effective_rank


def position_eranks(
    states: Sequence[torch.Tensor], rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """(S, N) float64 on CPU: the effective rank of every state (B, L, d, d) at the N
    positions (rows[i], cols[i])."""
    return torch.stack([effective_rank(S[rows, cols]).cpu() for S in states])


class RankSums:
    """Per-item running sums of per-position effective ranks, one column per state."""

    def __init__(self, n_items: int, n_states: int) -> None:
        self.total = torch.zeros(n_items, n_states, dtype=torch.float64)  # (items, S)
        self.count = torch.zeros(n_items, dtype=torch.float64)

    def add(self, eranks: torch.Tensor, item: torch.Tensor) -> None:
        """``eranks`` (S, N) of N positions belonging to items ``item`` (N,)."""
        item = item.cpu()
        self.total.index_add_(0, item, eranks.T.to(torch.float64))
        self.count.index_add_(0, item, torch.ones(item.shape[0], dtype=torch.float64))

    def means(self) -> list[list[float]]:
        """Per item, the mean over its positions per state (NaN where it had none)."""
        return (self.total / self.count[:, None]).tolist()
