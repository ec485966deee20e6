"""Per-position matrix layers shared by every variant (spec §2.1, §2.2, §2.5).

Parameter names and shapes are the research checkpoint format, so they must not change.

    >>> layer = MultiplicativeThinkingLayer(d=8, dropout=0.0)
    >>> layer(torch.randn(2, 5, 8, 8)).shape
    torch.Size([2, 5, 8, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MatrixRMSNorm(nn.Module):
    """RMS over all d² entries of each matrix, eps inside the root, full d×d gain."""

    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d, d))
        self.eps = eps

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        r = torch.sqrt(X.pow(2).mean(dim=(-2, -1), keepdim=True) + self.eps)  # (..., 1, 1)
        return (X / r) * self.weight


class RowThenColProjection(nn.Module):
    """P(X) = silu(A X) B: A mixes rows, B mixes columns."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.eye(d) + 0.02 * torch.randn(d, d))
        self.B = nn.Parameter(torch.eye(d) + 0.02 * torch.randn(d, d))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return F.silu(self.A @ X) @ self.B


class MultiplicativeThinkingLayer(nn.Module):
    """M + g_m ((I+Δ) X (I+Γ) − X) + g_w v kᵀ, with X = norm(M) (spec §2.5)."""

    def __init__(self, d: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = MatrixRMSNorm(d)
        # Construction order is the research draw order (spec §4): projections first.
        self.delta_gate = RowThenColProjection(d)
        self.delta_value = RowThenColProjection(d)
        self.delta_up = RowThenColProjection(d)
        self.gamma_gate = RowThenColProjection(d)
        self.gamma_value = RowThenColProjection(d)
        self.gamma_up = RowThenColProjection(d)
        self.key_col = nn.Parameter(torch.randn(d, 1) * 0.02)
        self.val_col = nn.Parameter(torch.randn(d, 1) * 0.02)
        self.gate_mult_W = nn.Parameter(torch.randn(d, d) * 0.02)
        self.gate_mult_bias = nn.Parameter(torch.tensor(-2.0))
        self.gate_write_W = nn.Parameter(torch.randn(d, d) * 0.02)
        self.gate_write_bias = nn.Parameter(torch.tensor(-2.0))
        self.scale = nn.Parameter(torch.tensor(0.1))
        self.register_buffer("I", torch.eye(d), persistent=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, M: torch.Tensor) -> torch.Tensor:
        X = self.norm(M)  # (B, L, d, d)
        s = self.scale.clamp(0.01, 0.5)
        delta = self.delta_up(F.silu(self.delta_gate(X)) * self.delta_value(X)) * s
        gamma = self.gamma_up(F.silu(self.gamma_gate(X)) * self.gamma_value(X)) * s
        m_mult = ((self.I + delta) @ X) @ (self.I + gamma)
        k = X @ self.key_col  # (B, L, d, 1)
        v = X @ self.val_col  # (B, L, d, 1)
        m_write = v @ k.transpose(-2, -1)  # (B, L, d, d)
        g_m = torch.sigmoid((self.gate_mult_W * X).sum(dim=(-2, -1)) + self.gate_mult_bias)
        g_w = torch.sigmoid((self.gate_write_W * X).sum(dim=(-2, -1)) + self.gate_write_bias)
        update = g_m[..., None, None] * (m_mult - X) + g_w[..., None, None] * m_write
        return M + self.dropout(update)
