"""Causal attention between matrix tokens: Frobenius (spec §2.3) and 3D (spec §2.4).

Both split each d×d matrix into H contiguous row blocks of height h = d/H; queries, keys
and values are (B, H, L, h, d). Both score a query against a key by the Frobenius inner
product of their row blocks (``scores``); they differ in how the weights mix the values
(``mix``). ``attend`` is the fused computation of both steps. A decode cache
(``ablate.model.cache``) stores keys and values between calls and may split the keys into
parts (a prompt shared by several continuations, and each continuation's own tokens);
since ``mix`` is linear in the weights, the parts can be mixed separately and summed.
With no cache and no mask the forward pass is exactly the research computation.

    >>> attn = FrobeniusAttention(d=8, n_heads=2, dropout=0.0)
    >>> out = attn(torch.randn(1, 4, 8, 8))
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ablate.intra_op import torch_threads
from ablate.model.layers import MatrixRMSNorm, RowThenColProjection

if TYPE_CHECKING:
    from ablate.model.cache import AttentionCache

Slot = tuple[int, int]  # (iteration t, layer index): where a cache keeps keys and values


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

    def split(self, X: torch.Tensor) -> torch.Tensor:
        B, L, d, _ = X.shape
        return X.view(B, L, self.n_heads, self.head_dim, d).transpose(1, 2)  # (B, H, L, h, d)

    def merge(self, O: torch.Tensor) -> torch.Tensor:
        B, H, L, h, d = O.shape
        return O.transpose(1, 2).reshape(B, L, d, d)

    def forward(
        self,
        M: torch.Tensor,
        mask: torch.Tensor | None = None,
        cache: AttentionCache | None = None,
        slot: Slot = (0, 0),
    ) -> torch.Tensor:
        """``M`` (B, L, d, d) -> M + attention output. ``mask`` bool (B|1, 1, L, L_keys),
        True = may attend, or None for plain causal attention; with a ``cache`` the keys
        and values of this call are stored at ``slot`` and the queries see every key the
        cache holds there."""
        X = self.norm(M)
        q = self.split(self.q_proj(X))
        k = self.split(self.k_proj(X))
        v = self.split(self.v_proj(X))
        if cache is None:
            O = self.attend(q, k, v, mask, causal=mask is None)  # (B, H, L, h, d)
        else:
            O = cache.attend(slot, self, q, k, v, mask)
        return M + self.o_proj(self.merge(O))

    # The two steps of attention, for caches that hold keys in parts. Shapes: q (..., Lq,
    # h, d), k and v (..., Lk, h, d), weights (..., Lq, Lk).
    scale: float

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Scaled Frobenius inner products of row blocks: (..., Lq, Lk)."""
        # Keys on the left: with one query per (row, head), as in decoding, this is a
        # matrix-vector product over the keys as stored, ~3x faster on CPU than q kᵀ.
        return (k.flatten(-2) @ q.flatten(-2).mT).mT * self.scale

    def mix(self, w: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
            v: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def mix_columns(self, w: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                    v_columns: torch.Tensor) -> torch.Tensor:
        """``mix`` with the values given as columns, (..., h·d, Lk) (a shared prompt)."""
        v = v_columns.transpose(-1, -2).unflatten(-1, (self.head_dim, self.d))
        return self.mix(w, q, k, v)

    # The same two steps for one query per (row, head) against that row's own keys held
    # position-major, as a decode cache appends them: q (R, H, h, d), k and v
    # (Lk, R, H, h, d), weights (R, H, Lk); the filled part of such a buffer is contiguous.
    def scores_each(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """(R, H, Lk): ``scores`` of each row's query against its own keys."""
        return self.scores(q[:, :, None], k.permute(1, 2, 0, 3, 4))[:, :, 0]

    def mix_each(self, w: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                 v: torch.Tensor) -> torch.Tensor:
        """(R, H, h, d): ``mix`` of each row's own values by its weights (R, H, Lk)."""
        k, v = k.permute(1, 2, 0, 3, 4), v.permute(1, 2, 0, 3, 4)
        return self.mix(w[:, :, None], q[:, :, None], k, v)[:, :, 0]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None, causal: bool) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class FrobeniusAttention(_MatrixAttention):
    """Scaled dot-product attention on flattened row blocks; scale 1/sqrt(h·d)."""

    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__(d, n_heads, dropout)
        self.scale = 1.0 / math.sqrt(self.head_dim * d)

    def mix(self, w: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
            v: torch.Tensor) -> torch.Tensor:
        out = w @ v.flatten(-2)  # (..., Lq, h*d)
        return out.view(*out.shape[:-1], *v.shape[-2:])

    def mix_columns(self, w: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                    v_columns: torch.Tensor) -> torch.Tensor:
        # (..., Lq, h*d). Few queries per key set (one condition, as in most decoding):
        # matrix-vector products over the columns as stored, 1.5x faster on CPU than
        # reading values as rows; many (11 conditions): one product against the
        # transposed view, within ~15% of rows (the other order is 1.6x slower there).
        out = (v_columns @ w.mT).mT if w.shape[-2] <= 4 else w @ v_columns.mT
        return out.unflatten(-1, (self.head_dim, self.d))

    # Elementwise products and sums over the contiguous position-major buffers: one
    # streaming pass, ~2x faster on CPU than a batched product over (R·H) short rows.
    def scores_each(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return (k.flatten(-2) * q.flatten(-2)).sum(-1).permute(1, 2, 0) * self.scale

    def mix_each(self, w: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
                 v: torch.Tensor) -> torch.Tensor:
        out = (v.flatten(-2) * w.permute(2, 0, 1)[..., None]).sum(0)  # (R, H, h*d)
        return out.view(*out.shape[:-1], *v.shape[-2:])

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        B, H, L, h, d = q.shape
        Lk = k.shape[2]
        if L == 1 and q.device.type == "cpu" and torch.get_num_threads() > 1:
            # For a single query, CPU SDPA splits the keys between threads, so its
            # round-off would follow the thread count (which the thread policy varies
            # with the load); on one thread it is the same at every setting.
            with torch_threads(1):
                return self.attend(q, k, v, mask, causal)
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
        self.scale = 1.0 / math.sqrt(self.head_dim)

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        # The research order of operations: inner products first, then the division.
        return torch.einsum("...lrc,...mrc->...lm", q, k) / math.sqrt(q.shape[-2])

    def mix(self, w: torch.Tensor, q: torch.Tensor, k: torch.Tensor,
            v: torch.Tensor) -> torch.Tensor:
        kv = torch.einsum("...mrc,...mre->...mce", k, v)  # (..., Lk, d, d): K_mᵀ V_m
        agg = torch.einsum("...lm,...mce->...lce", w, kv)  # (..., Lq, d, d)
        return q @ agg  # (..., Lq, h, d)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
    ) -> torch.Tensor:
        L, Lk = q.shape[2], k.shape[2]
        s = self.scores(q, k)  # (B, H, L, Lk)
        if mask is None:
            # Plain causal over the last L of Lk positions (also right when Lk > L).
            mask = torch.ones(L, Lk, dtype=torch.bool, device=q.device).tril(Lk - L)
        s = s.masked_fill(~mask, float("-inf"))
        w = self.attn_dropout(torch.softmax(s, dim=-1))
        return self.mix(w, q, k, v)  # (B, H, L, h, d)


ATTENTIONS: dict[str, type[_MatrixAttention]] = {
    "frobenius": FrobeniusAttention,
    "matrix3d": Matrix3DAttention,
}
