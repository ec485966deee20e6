"""The research matrix bottleneck of matrix-CODI on GPT-2 (spec §9), research key layout.

``F(h) = out_norm(readout(Z))`` with ``Z = thinker(reshape(w_up h))`` (d×d, row-major),
optionally truncated to rank k (``force_rank_k``, the research eigh route, spec §6.3).
Parameter names are the research ``MatrixBottleneck``'s, so ``bottleneck.*`` keys of a
research checkpoint load strictly:

* always: ``w_up`` (D -> d²), ``out_norm`` (LayerNorm(D)), ``thinker.*`` (one
  multiplicative thinking layer at d, dropout 0; absent when ``use_thinking_iter`` was off)
* ``flatten``: ``w_down`` (d² -> D)
* ``bilinear`` / ``bilinear_gelu``: probes ``U``, ``V`` (d², d) and ``out`` (d² -> D),
  GELU on the probes for the latter
* ``svd_aug``: ``w_down`` plus ``sigma_proj`` (d -> 4d, GELU, 4d -> D) on the singular values
* ``quadratic``: ``w_down_quad`` on [vec(Z Zᵀ), vec(Zᵀ Z)] (2d² -> D)

    >>> bottleneck = MatrixBottleneck(hidden=768, d=16)
    >>> Z = bottleneck.matrix(torch.randn(2, 768))       # (2, 16, 16), the observable
    >>> bottleneck.readout(Z).shape
    torch.Size([2, 768])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ablate.errors import AblateError
from ablate.model.layers import MultiplicativeThinkingLayer
from ablate.projections import research_truncate_to_rank

READOUTS = ("flatten", "bilinear", "bilinear_gelu", "svd_aug", "quadratic")


def _linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.normal_(layer.weight, std=0.02)
    nn.init.zeros_(layer.bias)
    return layer


class MatrixBottleneck(nn.Module):
    """h (B, D) -> Z (B, d, d) -> next input embedding (B, D)."""

    def __init__(self, hidden: int, d: int = 16, *, readout: str = "flatten",
                 use_thinking_iter: bool = True, force_rank_k: int = 0) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise AblateError(f"readout '{readout}' is not one of {READOUTS}")
        self.d = d
        self.readout_kind = readout
        self.force_rank_k = int(force_rank_k)
        # Registration order follows the research module (w_up, out_norm, readout, thinker).
        self.w_up = _linear(hidden, d * d)
        self.out_norm = nn.LayerNorm(hidden)
        K = d * d
        if readout in ("flatten", "svd_aug"):
            self.w_down = _linear(K, hidden)
        if readout in ("bilinear", "bilinear_gelu"):
            self.U = nn.Parameter(torch.randn(K, d) / math.sqrt(d))
            self.V = nn.Parameter(torch.randn(K, d) / math.sqrt(d))
            self.out = _linear(K, hidden)
        if readout == "svd_aug":
            self.sigma_proj = nn.Sequential(_linear(d, 4 * d), nn.GELU(), _linear(4 * d, hidden))
        if readout == "quadratic":
            self.w_down_quad = _linear(2 * K, hidden)
        self.thinker = MultiplicativeThinkingLayer(d, dropout=0.0) if use_thinking_iter else None

    def matrix(self, h: torch.Tensor) -> torch.Tensor:
        """The observable Z (B, d, d): thinker output, after any forced truncation."""
        Z = self.w_up(h).view(-1, self.d, self.d)  # row-major reshape
        if self.thinker is not None:
            Z = self.thinker(Z)
        if self.force_rank_k > 0:
            Z = research_truncate_to_rank(Z, self.force_rank_k)
        return Z

    def readout(self, Z: torch.Tensor) -> torch.Tensor:
        """Next input embedding (B, D) from Z (B, d, d)."""
        B, d = Z.shape[0], self.d
        kind = self.readout_kind
        if kind in ("flatten", "svd_aug"):
            y = self.w_down(Z.reshape(B, d * d))
            if kind == "svd_aug":
                with torch.autocast(device_type=Z.device.type, enabled=False):
                    sigma = torch.linalg.svdvals(Z.float()).to(Z.dtype)  # (B, d)
                y = y + self.sigma_proj(sigma)
        elif kind in ("bilinear", "bilinear_gelu"):
            probes = torch.einsum("ki,bij,kj->bk", self.U, Z, self.V)  # u_kᵀ Z v_k
            y = self.out(F.gelu(probes) if kind == "bilinear_gelu" else probes)
        else:
            gram = torch.cat([(Z @ Z.mT).reshape(B, -1), (Z.mT @ Z).reshape(B, -1)], -1)
            y = self.w_down_quad(gram)
        return self.out_norm(y)


def infer_readout(keys: set[str], prefix: str, stated: str | None, source: str) -> str:
    """The readout of a bottleneck state dict: the stated one (``cfg['readout']``) if it
    fits the keys, else the one the keys imply ("bilinear" needs the config to tell it
    from "bilinear_gelu", which has the same parameters)."""
    has = {name: any(k.startswith(f"{prefix}{name}.") or k == f"{prefix}{name}" for k in keys)
           for name in ("w_down", "sigma_proj", "U", "out", "w_down_quad")}
    if has["w_down_quad"]:
        implied = ("quadratic",)
    elif has["sigma_proj"]:
        implied = ("svd_aug",)
    elif has["w_down"]:
        implied = ("flatten",)
    elif has["U"] and has["out"]:
        implied = ("bilinear", "bilinear_gelu")
    else:
        raise AblateError(f"{source}: the bottleneck has no readout weights ({prefix}w_down, "
                          f"{prefix}U/V/out, {prefix}w_down_quad); the checkpoint is incomplete")
    if stated is not None:
        if stated not in implied:
            raise AblateError(f"{source}: cfg readout '{stated}' does not match the weights, "
                              f"which imply {' or '.join(implied)}")
        return stated
    return implied[0]
