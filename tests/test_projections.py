"""Rank-k projections against numpy float64: best approximation, idempotence, Haar draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate.errors import AblateError
from ablate.projections import (
    decompose,
    draw_generator,
    keeps_input,
    norm_matched,
    random_project,
    random_subspace,
    research_truncate_to_rank,
    svd_project,
)
from tests.test_rank import hard_spectra, with_spectrum

D = 8
KS = (1, 2, 3, 5, 7)


def np_truncated(A: np.ndarray, k: int) -> np.ndarray:
    U, s, Vh = np.linalg.svd(A)
    return (U[..., :k] * s[..., None, :k]) @ Vh[..., :k, :]


def gapped(seed: int, dtype: torch.dtype = torch.float64, batch: int = 4) -> torch.Tensor:
    """Matrices with distinct singular values 1 > ... > 1/8, so every truncation is unique."""
    spectra = np.tile(np.linspace(1.0, 1.0 / D, D), (batch, 1))
    return torch.from_numpy(with_spectrum(np.random.default_rng(seed), spectra)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_decomposition_gives_numpys_truncated_svd_for_every_k(dtype):
    X = gapped(0, dtype)
    basis = decompose(X)
    for k in KS:
        Xk = svd_project(basis, k)
        assert Xk.dtype == dtype and Xk.shape == X.shape
        expected = np_truncated(X.double().numpy(), k)
        assert np.abs(Xk.double().numpy() - expected).max() <= 1e-5


@pytest.mark.parametrize("name", list(hard_spectra()))
def test_svd_project_is_rank_k_and_attains_the_eckart_young_error(name):
    # Rank <= k, and ||X - X_k||_F^2 = sum of the tail s_i^2, which no rank-k matrix beats,
    # including at repeated and near-zero singular values where the optimum is not unique.
    X = torch.from_numpy(with_spectrum(np.random.default_rng(1), hard_spectra()[name]))
    s = np.linalg.svd(X.numpy(), compute_uv=False)
    scale = (s**2).sum(-1)
    basis = decompose(X.float())
    for k in KS:
        Xk = svd_project(basis, k).double()
        error = ((X - Xk) ** 2).sum((-2, -1)).numpy()
        assert np.all(np.abs(error - (s[:, k:] ** 2).sum(-1)) <= 1e-5 * scale)
        assert np.all(np.linalg.svd(Xk.numpy(), compute_uv=False)[:, k:] <= 1e-5 * s[:, :1])


def test_float64_projection_is_exactly_rank_k():
    X = gapped(2)
    for k in KS:
        assert np.all(np.linalg.matrix_rank(svd_project(decompose(X), k).numpy()) == k)


def test_k_at_or_above_d_returns_the_input_and_k_below_one_raises():
    X = gapped(3, torch.float32)
    basis = decompose(X)
    assert svd_project(basis, D) is X and svd_project(basis, 100) is X
    assert keeps_input(D, D) and not keeps_input(D - 1, D)
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(AblateError, match="rank k"):
            svd_project(basis, bad)


def test_rectangular_and_leading_axes():
    X = torch.from_numpy(np.random.default_rng(4).standard_normal((2, 3, 5, 9))).float()
    Xk = svd_project(decompose(X), 2)
    assert Xk.shape == X.shape
    assert np.abs(Xk.double().numpy() - np_truncated(X.double().numpy(), 2)).max() <= 1e-5


def test_projections_ignore_autocast():
    X = gapped(5, torch.float32)
    Q = random_subspace(D, 3, generator=draw_generator(0, 0, 3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = (svd_project(decompose(X), 3), random_project(X, Q),
                  research_truncate_to_rank(X, 3))
    outside = (svd_project(decompose(X), 3), random_project(X, Q),
               research_truncate_to_rank(X, 3))
    assert all(torch.equal(a, b) for a, b in zip(inside, outside, strict=True))


def test_research_truncation_equals_truncated_svd_when_the_spectrum_has_gaps():
    X = gapped(6, torch.float32)
    for k in KS:
        Zk = research_truncate_to_rank(X, k)
        assert Zk.dtype == torch.float32
        assert np.abs(Zk.double().numpy() - np_truncated(X.double().numpy(), k)).max() <= 1e-5
    # k >= d still goes through eigh (no shortcut), which is the identity up to round-off.
    assert torch.allclose(research_truncate_to_rank(X, 50), X, atol=1e-5)


def test_research_truncation_keeps_dtype_and_passes_gradients():
    Z = gapped(7, torch.float32).to(torch.bfloat16)
    assert research_truncate_to_rank(Z, 2).dtype == torch.bfloat16
    W = gapped(8, torch.float32).requires_grad_()
    research_truncate_to_rank(W, 3).sum().backward()
    assert W.grad is not None and torch.isfinite(W.grad).all()


def test_random_subspace_is_orthonormal_and_deterministic_per_seed_draw_and_k():
    Q = random_subspace(D, 3, generator=draw_generator(11, 2, 3))
    assert Q.shape == (D, 3) and Q.dtype == torch.float64
    assert torch.allclose(Q.mT @ Q, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.equal(Q, random_subspace(D, 3, generator=draw_generator(11, 2, 3)))
    for other in ((11, 3, 3), (12, 2, 3), (11, 2, 4)):
        assert not torch.allclose(Q, random_subspace(D, 3, generator=draw_generator(*other)))
    assert random_subspace(D, 20, generator=draw_generator(0, 0, 20)).shape == (D, D)
    assert random_subspace(D, 2, generator=draw_generator(0, 0, 2), dtype=torch.float32,
                           side="rows").dtype == torch.float32


def test_draw_generator_seed_is_a_pure_function_of_its_arguments():
    first = draw_generator(3, 1, 4).initial_seed()
    assert first == draw_generator(3, 1, 4).initial_seed()
    assert len({draw_generator(3, draw, 4).initial_seed() for draw in range(50)}) == 50
    for bad in ((-1, 0, 1), (0, 1.5, 1), (0, 0, True)):
        with pytest.raises(AblateError, match="non-negative integer"):
            draw_generator(*bad)


def test_random_subspace_is_haar():
    # Haar: E[Q] = 0 (the QR sign fix matters: without it Q[0, 0] = -|g_00| / ||g_0||, mean
    # about -0.6) and E[Q Q^T] = (k/d) I (a fixed or biased subspace is off by ~0.5).
    # Standard errors are below 0.03 with 300 draws; tolerances are 0.15.
    d, k, draws = 4, 2, 300
    generator = torch.Generator().manual_seed(0)
    Qs = torch.stack([random_subspace(d, k, generator=generator) for _ in range(draws)])
    assert Qs.mean(0).abs().max() < 0.15
    projector_mean = (Qs @ Qs.mT).mean(0)
    assert torch.allclose(projector_mean, torch.eye(d, dtype=torch.float64) * k / d, atol=0.15)


@pytest.mark.parametrize("side", ["columns", "rows"])
def test_random_project_is_the_orthogonal_projection_on_the_named_side(side):
    X = torch.from_numpy(np.random.default_rng(9).standard_normal((3, 6, 5))).float()
    d = 6 if side == "columns" else 5
    Q = random_subspace(d, 2, generator=draw_generator(0, 1, 2), side=side)
    P = random_project(X, Q, side)
    q, x = Q.numpy(), X.double().numpy()
    expected = q @ q.T @ x if side == "columns" else x @ q @ q.T
    assert P.dtype == torch.float32 and np.abs(P.double().numpy() - expected).max() < 1e-5
    assert torch.allclose(random_project(P, Q, side), P, atol=1e-6)  # idempotent
    assert np.all(np.linalg.svd(P.double().numpy(), compute_uv=False)[:, 2:] < 1e-5)  # rank 2


def test_random_project_accepts_one_basis_per_matrix_and_full_bases_keep_the_input():
    X = torch.from_numpy(np.random.default_rng(10).standard_normal((3, D, D)))
    Qs = torch.stack([random_subspace(D, 2, generator=draw_generator(0, i, 2)) for i in range(3)])
    P = random_project(X, Qs, "rows")
    for i in range(3):
        assert torch.allclose(P[i], X[i] @ Qs[i] @ Qs[i].T)
    full = random_subspace(D, D, generator=draw_generator(0, 0, D))
    assert random_project(X, full) is X


def test_random_project_rejects_a_basis_of_the_wrong_size_or_side():
    X = torch.zeros(2, 6, 5)
    Q = random_subspace(5, 2, generator=draw_generator(0, 0, 2))
    with pytest.raises(AblateError, match="random_subspace"):
        random_project(X, Q, "columns")
    with pytest.raises(AblateError, match="columns, rows"):
        random_project(X, Q, "diagonal")


def test_norm_matched_restores_the_frobenius_norm_and_direction_and_keeps_zeros():
    X = torch.from_numpy(np.random.default_rng(12).standard_normal((4, D, D))).float()
    Xk = svd_project(decompose(X), 2)
    Xk[1] = 0.0
    matched = norm_matched(Xk, X)
    norms = torch.linalg.matrix_norm(matched)
    assert torch.allclose(norms[[0, 2, 3]], torch.linalg.matrix_norm(X)[[0, 2, 3]], rtol=1e-6)
    assert torch.equal(matched[1], torch.zeros(D, D))
    direction = Xk / torch.linalg.matrix_norm(Xk)[:, None, None]
    assert torch.allclose(matched[0] / norms[0], direction[0], atol=1e-6)
    with pytest.raises(AblateError, match="matching shapes"):
        norm_matched(Xk[:2], X)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_through_one_basis_match_float64_svd_also_split_over_threads(dtype,
                                                                               monkeypatch):
    from ablate import rank

    monkeypatch.setattr(rank, "MATRICES_PER_CALL", 1)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # two worker threads, each with a share of the batch
    try:
        X = gapped(13, dtype).requires_grad_()
        weights = torch.from_numpy(np.random.default_rng(14).standard_normal(X.shape))
        (svd_project(decompose(X), 3) * weights).sum().backward()
    finally:
        torch.set_num_threads(saved)
    reference = X.detach().double().requires_grad_()
    U, s, Vh = torch.linalg.svd(reference)
    (((U[..., :3] * s[..., None, :3]) @ Vh[..., :3, :]) * weights).sum().backward()
    assert X.grad.dtype == dtype
    assert torch.allclose(X.grad.double(), reference.grad, atol=1e-5)
