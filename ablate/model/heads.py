"""Output heads: the bilinear MultiProbeHead and the vector-collapse readout (spec §2.9).

    >>> head = MultiProbeHead(d=8, vocab_size=259, n_probes=12)
    >>> head(torch.randn(2, 5, 8, 8)).shape
    torch.Size([2, 5, 259])
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MultiProbeHead(nn.Module):
    """logits = out.weight · probe, probe_k = u_kᵀ Y v_k."""

    def __init__(self, d: int, vocab_size: int, n_probes: int | None = None) -> None:
        super().__init__()
        K = n_probes or d
        self.U = nn.Parameter(torch.randn(K, d) * (1 / math.sqrt(d)))
        self.V = nn.Parameter(torch.randn(K, d) * (1 / math.sqrt(d)))
        self.out = nn.Linear(K, vocab_size, bias=False)

    def forward(self, Y: torch.Tensor) -> torch.Tensor:
        Z = Y @ self.V.t()  # (..., d, K): Z[i,k] = Σ_j Y[i,j] V[k,j]
        probe = (self.U.t() * Z).sum(dim=-2)  # (..., K)
        return self.out(probe)


def collapse_readout(
    Y: torch.Tensor, collapse_W: torch.Tensor, output_head: nn.Linear
) -> torch.Tensor:
    """Round-1 head: vec_i = Σ_j W_ij Y_ij, then a linear map to the vocabulary."""
    vec = (Y * collapse_W).sum(dim=-1)  # (..., d)
    return output_head(vec)
