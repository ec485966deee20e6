"""Rank-k projections of batches of matrices: best rank-k (SVD), research eigh, random subspace.

All functions act on the last two axes of `(..., m, n)` tensors (states are `(B, L, d, d)`),
keep the input's device and dtype, and compute in float32 or float64 with autocast off.
One decomposition serves every k:

    >>> basis = decompose(M)                       # M: (B, L, d, d)   # doctest: +SKIP
    >>> ablated = {k: svd_project(basis, k) for k in (1, 2, 4, 8)}   # doctest: +SKIP

Random subspaces are drawn per (eval seed, draw, k) so every condition is reproducible:

    >>> generator = draw_generator(eval_seed=0, draw=3, k=4)
    >>> Q = random_subspace(32, 4, generator=generator)      # (32, 4), orthonormal columns
    >>> projected = random_project(M, Q, side="columns")   # Q Q^T M   # doctest: +SKIP

A k at or above min(m, n) leaves every matrix unchanged; `keeps_input(k, r)` says so, and
the SVD and random projections then return the input tensor itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ablate.errors import AblateError
from ablate.rank import singular_decomposition
from ablate.sites import SIDES

Side = Literal["columns", "rows"]
# Separates these seeds from any other stream derived from the same eval seed
# (the bytes of "rand").
_DRAW_DOMAIN = 0x72616E64


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise AblateError(
            f"rank k must be an integer >= 1, got {k!r}; use k in 1..d (k >= d keeps the input)"
        )


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise AblateError(f"projection side must be one of {', '.join(SIDES)}, got {side!r}")


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; float32, float16 and bfloat16 are computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def keeps_input(k: int, r: int) -> bool:
    """True when a rank-k projection of matrices of rank limit r = min(m, n) is the identity."""
    _check_k(k)
    return k >= r


@dataclass(frozen=True)
class LowRankBasis:
    """One decomposition of a batch, X = left @ right, serving every rank k.

    `left[..., :k] @ right[..., :k, :]` is the best rank-k approximation (Eckart-Young).
    Factors are float64 with the singular values folded into one side (see
    `ablate.rank.singular_decomposition` for why), singular values descending.
    """

    inputs: torch.Tensor  # (..., m, n), returned unchanged for k >= r
    left: torch.Tensor  # (..., m, r) float64
    singular_values: torch.Tensor  # (..., r) float64, descending
    right: torch.Tensor  # (..., r, n) float64

    @property
    def rank_limit(self) -> int:
        """r = min(m, n): the largest rank a matrix of the batch can have."""
        return self.singular_values.shape[-1]


def decompose(X: torch.Tensor) -> LowRankBasis:
    """Decompose a batch (..., m, n) once; pass the result to `svd_project` for each k."""
    left, s, right = singular_decomposition(X)
    return LowRankBasis(inputs=X, left=left, singular_values=s, right=right)


def svd_project(basis: LowRankBasis, k: int) -> torch.Tensor:
    """Best rank-k approximation of every matrix in `basis`: (..., m, n), input dtype.

    Keeps the top-k singular triplets. Where s_k = s_{k+1} the best approximation is not
    unique and one of them is returned. k >= min(m, n) returns `basis.inputs` itself.
    """
    if keeps_input(k, basis.rank_limit):
        return basis.inputs
    X = basis.inputs
    with torch.autocast(device_type=X.device.type, enabled=False):
        Xk = basis.left[..., :k] @ basis.right[..., :k, :]  # (..., m, n) float64
    return Xk.to(X.dtype)


def research_truncate_to_rank(Z: torch.Tensor, k: int) -> torch.Tensor:
    """The research `truncate_to_rank` (spec 6.3): U_k (U_k^T Z), U_k from eigh(Z Z^T).

    Float32 with autocast off, eigenvectors of the k = min(k, m) largest eigenvalues,
    result cast back to Z's dtype. Differentiable through `eigh`, as used for CODI's
    forced-rank training. Unlike `svd_project`, k >= m still goes through the arithmetic.
    """
    _check_k(k)
    m = Z.shape[-2]
    k = min(k, m)
    with torch.autocast(device_type=Z.device.type, enabled=False):
        Zf = Z.float()
        _, U = torch.linalg.eigh(Zf @ Zf.mT)  # eigenvalues ascending
        Uk = U[..., m - k :]  # (..., m, k)
        return (Uk @ (Uk.mT @ Zf)).to(Z.dtype)


def draw_generator(eval_seed: int, draw: int, k: int) -> torch.Generator:
    """A CPU generator seeded from (eval_seed, draw, k) alone, the same in every process.

    numpy's SeedSequence hashes the tuple, so neighbouring seeds give unrelated streams
    and the seed does not depend on Python's hash randomisation.
    """
    for name, value in (("eval_seed", eval_seed), ("draw", draw), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise AblateError(f"{name} must be a non-negative integer, got {value!r}")
    words = np.random.SeedSequence([_DRAW_DOMAIN, eval_seed, draw, k]).generate_state(2)
    seed = (int(words[0]) << 32 | int(words[1])) & (2**63 - 1)
    return torch.Generator(device="cpu").manual_seed(seed)


def random_subspace(
    d: int,
    k: int,
    *,
    generator: torch.Generator,
    side: Side = "columns",
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Haar-random orthonormal basis Q (d, min(k, d)) of a k-dimensional subspace of R^d.

    Q is the QR factor of a standard Gaussian (d, k) matrix with each column's sign set so
    that diag(R) > 0; without that fix Q would follow LAPACK's sign convention and not be
    Haar. `side` names where the basis will act ("columns": Q Q^T X, d = m; "rows":
    X Q Q^T, d = n); the distribution is the same for both, so it is only validated here.
    Drawn in float64 on the generator's device, then moved to `dtype` and `device`.
    """
    _check_side(side)
    _check_k(k)
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise AblateError(f"matrix size d must be an integer >= 1, got {d!r}")
    k = min(k, d)
    gaussian = torch.randn(d, k, generator=generator, device=generator.device,
                           dtype=torch.float64)
    # geqrf + householder_product is linalg.qr's own arithmetic (bit-identical Q, and R's
    # diagonal is the diagonal of geqrf's output) without the parallel region that
    # linalg.qr enters: on a loaded 2-core machine that region stalled each draw ~20 ms.
    reflectors, tau = torch.geqrf(gaussian)
    Q = torch.linalg.householder_product(reflectors, tau)  # (d, k)
    signs = torch.where(reflectors.diagonal() < 0, -1.0, 1.0).to(torch.float64)
    return (Q * signs).to(dtype=dtype, device=device if device is not None else Q.device)


def random_project(X: torch.Tensor, Q: torch.Tensor, side: Side = "columns") -> torch.Tensor:
    """Orthogonal projection onto span(Q): Q Q^T X ("columns") or X Q Q^T ("rows").

    X (..., m, n); Q (d, k) or batched (..., d, k) with orthonormal columns and d = m for
    "columns", d = n for "rows". Returns X's shape and dtype; k >= d returns X itself.
    """
    _check_side(side)
    d = X.shape[-2] if side == "columns" else X.shape[-1]
    if Q.shape[-2] != d:
        raise AblateError(
            f"random basis has {Q.shape[-2]} rows but the {side} of X have length {d} "
            f"(X shape {tuple(X.shape)}); draw it with random_subspace(d={d}, ...)"
        )
    if keeps_input(Q.shape[-1], d):
        return X
    dtype = _working_dtype(X.dtype)
    with torch.autocast(device_type=X.device.type, enabled=False):
        A = X.to(dtype)
        B = Q.to(device=X.device, dtype=dtype)
        projected = B @ (B.mT @ A) if side == "columns" else (A @ B) @ B.mT
    return projected.to(X.dtype)


def norm_matched(Xk: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Rescale each projected matrix to its original's Frobenius norm: (..., m, n), Xk's dtype.

    Separates "lost directions" from "lost energy" in an ablation. A projection that is
    exactly zero stays zero (there is no direction to rescale).
    """
    if Xk.shape != X.shape:
        raise AblateError(
            f"norm_matched needs matching shapes, got {tuple(Xk.shape)} and {tuple(X.shape)}"
        )
    dtype = _working_dtype(Xk.dtype)
    with torch.autocast(device_type=X.device.type, enabled=False):
        A = Xk.to(dtype)
        projected_norm = torch.linalg.matrix_norm(A)  # (...)
        target_norm = torch.linalg.matrix_norm(X.to(dtype))
        nonzero = projected_norm > 0
        scale = torch.where(nonzero, target_norm / projected_norm.where(nonzero, 1.0), 0.0)
        return (A * scale[..., None, None]).to(Xk.dtype)
