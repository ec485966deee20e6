"""Causal attention between matrix tokens: Frobenius (spec §2.3) and 3D (spec §2.4).

Both split each d×d matrix into H contiguous row blocks of height h = d/H. Both accept
the keys/values of earlier positions (``past``) so that decoding can reuse them; with no
``past`` and no mask they reduce to exactly the research computation.

    >>> attn = FrobeniusAttention(d=8, n_heads=2, dropout=0.0)
    >>> out, kv = attn(torch.randn(1, 4, 8, 8))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ablate.model.layers import MatrixRMSNorm, RowThenColProjection

KV = tuple[torch.Tensor, torch.Tensor]


class _MatrixAttention(nn.Module):
    """Shared parameters: norm, q/k/v/o projections (identical names in both variants)."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = MatrixRMSNorm(d)
        self.q_proj = RowThenColProjection(d)
        self.k_proj = RowThenColProjection(d)
        self.v_proj = RowThenColProjection(d)
        self.o_proj = RowThenColProjection(d)
        self.d = d
        self.n_heads = n_heads
        self.head_dim = d // n_heads
        self.dropout_p = dropout

    def _split(self, X: torch.Tensor) -> torch.Tensor:
        B, L, d, _ = X.shape
        return X.view(B, L, self.n_heads, self.head_dim, d).transpose(1, 2)  # (B, H, L, h, d)

    def _merge(self, O: torch.Tensor) -> torch.Tensor:
        B, H, L, h, d = O.shape
        return O.transpose(1, 2).reshape(B, L, d, d)

    def forward(
        self, M: torch.Tensor, mask: torch.Tensor | None = None, past: KV | None = None
    ) -> tuple[torch.Tensor, KV]:
        """``M`` (B, L, d, d); ``mask`` bool (B|1, 1, L, L_past+L), True = may attend,
        or None for plain causal attention. Returns the output and the (k, v) of all
        positions so far, each (B, H, L_past+L, h, d)."""
        X = self.norm(M)
        q = self._split(self.q_proj(X))
        k = self._split(self.k_proj(X))
        v = self._split(self.v_proj(X))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        O = self._attend(q, k, v, mask, causal=past is None and mask is None)  # (B,H,L,h,d)
        return M + self.o_proj(self._merge(O)), (k, v)

    def _attend(self, q, k, v, mask, causal):  # pragma: no cover - abstract
        raise NotImplementedError


class FrobeniusAttention(_MatrixAttention):
    """Scaled dot-product attention on flattened row blocks; scale 1/sqrt(h·d)."""

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        B, H, L, h, d = q.shape
        Lk = k.shape[2]
        o = F.scaled_dot_product_attention(
            q.reshape(B, H, L, h * d),
            k.reshape(B, H, Lk, h * d),
            v.reshape(B, H, Lk, h * d),
            attn_mask=mask,
            dropout_p=self.dropout_p if self.training else 0.0,
            is_causal=causal and L > 1,
        )  # (B, H, L, h*d)
        return o.view(B, H, L, h, d)


class Matrix3DAttention(_MatrixAttention):
    """Scores tr(Q_l K_mᵀ)/sqrt(h); values aggregated as Q_l Σ_m w_lm K_mᵀ V_m.

    The research code materialises (B, H, L, L, h, d); summing K_mᵀ V_m (d×d) first is
    the same function (spec §2.4 step 6) in O(L·d²) memory instead of O(L²·h·d).
    """

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__(d, n_heads, dropout)
        self.attn_dropout = nn.Dropout(dropout)

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        B, H, L, h, d = q.shape
        Lk = k.shape[2]
        s = torch.einsum("bhlrc,bhmrc->bhlm", q, k) / math.sqrt(h)  # (B, H, L, Lk)
        if mask is None:
            # Plain causal over the last L of Lk positions (also right when Lk > L).
            mask = torch.ones(L, Lk, dtype=torch.bool, device=q.device).tril(Lk - L)
        s = s.masked_fill(~mask, float("-inf"))
        w = self.attn_dropout(torch.softmax(s, dim=-1))
        kv = torch.einsum("bhmrc,bhmre->bhmce", k, v)  # (B, H, Lk, d, d): K_mᵀ V_m
        agg = torch.einsum("bhlm,bhmce->bhlce", w, kv)  # (B, H, L, d, d)
        return q @ agg  # (B, H, L, h, d)


ATTENTIONS: dict[str, type[_MatrixAttention]] = {
    "frobenius": FrobeniusAttention,
    "matrix3d": Matrix3DAttention,
}
