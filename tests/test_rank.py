"""Rank metrics against numpy float64 on matrices with known spectra.

Accuracy criterion for singular values (the module's contract): per matrix,
max_i |s_i - s_i^ref| <= 1e-5 * s_1^ref, with s^ref numpy's float64 SVD of the input.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ablate import rank
from ablate.errors import AblateError
from ablate.rank import (
    effective_rank,
    numerical_rank,
    participation_ratio,
    rankme,
    research_measure_ranks,
    residual_ratio,
    singular_decomposition,
    singular_values,
    spectral_summary,
    stable_rank,
)

D = 8


def haar_orthogonal(rng: np.random.Generator, n: int, batch: int) -> np.ndarray:
    """(batch, n, n) Haar orthogonal matrices, drawn independently of the code under test."""
    Q, R = np.linalg.qr(rng.standard_normal((batch, n, n)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[:, None, :]


def with_spectrum(rng: np.random.Generator, spectra: np.ndarray) -> np.ndarray:
    """float64 matrices U diag(s) V^T, one per row of `spectra` (batch, n)."""
    batch, n = spectra.shape
    U, V = haar_orthogonal(rng, n, batch), haar_orthogonal(rng, n, batch)
    return (U * spectra[:, None, :]) @ V.transpose(0, 2, 1)


def hard_spectra(n: int = D) -> dict[str, np.ndarray]:
    """Named (batch, n) spectra: wide dynamic range, repeats, exact zeros."""
    return {
        "log_1e-8": np.logspace(0, -8, n)[None],
        "log_1e-12": np.logspace(0, -12, n)[None],
        "repeated": np.r_[np.full(3, 2.0), np.full(3, 1.0), np.full(n - 6, 1e-6)][None],
        "rank_2": np.r_[3.0, 1.0, np.zeros(n - 2)][None],
        "huge": 1e15 * np.logspace(0, -6, n)[None],
        "tiny": 1e-20 * np.logspace(0, -6, n)[None],
        "mixed": np.abs(np.random.default_rng(5).standard_normal((4, n))) ** 3,
    }


def assert_spectrum_close(s: torch.Tensor, ref: np.ndarray, rel: float = 1e-5) -> None:
    scale = np.maximum(ref[..., :1], np.finfo(np.float64).tiny)
    assert np.all(np.abs(s.numpy() - ref) <= rel * scale)


@pytest.mark.parametrize("name", list(hard_spectra()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [D, 32])
def test_singular_values_match_numpy_float64_within_1e5_of_s1(name, dtype, n):
    spectra = hard_spectra(n)[name]
    A = torch.from_numpy(with_spectrum(np.random.default_rng(0), spectra)).to(dtype)
    ref = np.linalg.svd(A.double().numpy(), compute_uv=False)
    s = singular_values(A)
    assert s.dtype == torch.float64 and s.shape == ref.shape
    assert_spectrum_close(s, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_measured_exactly_as_given(dtype):
    A = torch.from_numpy(np.random.default_rng(1).standard_normal((5, D, D))).to(dtype)
    assert_spectrum_close(singular_values(A), np.linalg.svd(A.double().numpy(),
                                                            compute_uv=False))


def test_zero_and_identity_spectra_are_exact():
    zeros = torch.zeros(2, D, dtype=torch.float64)
    assert torch.equal(singular_values(torch.zeros(2, D, D)), zeros)
    assert torch.allclose(singular_values(torch.eye(D)), torch.ones(D, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(3, 5, 2), (2, 3, 4, 6), (7, 7), (0, 4, 4)])
def test_rectangular_and_batched_shapes(shape):
    # Wide matrices take the X X^T Gram, tall ones X^T X; leading axes are kept.
    A = torch.from_numpy(np.random.default_rng(2).standard_normal(shape)).float()
    s = singular_values(A)
    assert s.shape == (*shape[:-2], min(shape[-2:]))
    if A.numel():
        assert_spectrum_close(s, np.linalg.svd(A.double().numpy(), compute_uv=False))


def test_threaded_batch_split_equals_one_call_and_restores_the_thread_count(monkeypatch):
    # Splitting the batch over threads must not change any matrix's result, and torch's
    # thread count must come back after the single-threaded LAPACK section, also nested.
    A = torch.from_numpy(np.random.default_rng(3).standard_normal((10, 4, 4)))
    G = A.mT @ A
    monkeypatch.setattr(rank, "MATRICES_PER_CALL", 1)
    saved = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with rank._one_thread_per_lapack_call() as available:
            assert available == 3 and torch.get_num_threads() == 1
            whole, values = torch.linalg.eigh(G), torch.linalg.eigvalsh(G)
            nested = rank._map_over_batch(torch.linalg.eigvalsh, G)  # shares the setting
        assert torch.get_num_threads() == 3
        split = rank._map_over_batch(torch.linalg.eigh, G)  # three threads
        assert torch.get_num_threads() == 3
        assert torch.equal(split[0], whole[0]) and torch.equal(split[1], whole[1])
        assert torch.equal(rank._map_over_batch(torch.linalg.eigvalsh, G), values)
        assert torch.equal(nested, values)
        with pytest.raises(torch.linalg.LinAlgError):  # a failure in a worker thread surfaces
            rank._map_over_batch(torch.linalg.cholesky, -G)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(saved)


def test_ctrl_c_while_the_rank_threads_start_is_raised_after_every_thread_finished(
        monkeypatch):
    # Invariant: a KeyboardInterrupt never leaves a rank thread running (the interpreter's
    # exit does not wait for a thread interrupted in Thread.start, and it aborts the
    # process when it wakes up, rc -6): a SIGINT that arrives while the threads start
    # or run is raised once all of them are done, under the handler in place before.
    import signal
    import threading
    import time

    finished: list[str] = []

    def fn(piece: torch.Tensor) -> torch.Tensor:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.2)
        finished.append(threading.current_thread().name)
        return piece

    start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        start(thread)  # the thread runs; Ctrl-C arrives before start() returns
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        rank._run_in_threads(fn, tuple(torch.zeros(3, 1, 1).split(1)), 3)
    assert len(finished) == 3  # both helpers finished before the interrupt was raised
    assert signal.getsignal(signal.SIGINT) is before


def test_non_finite_matrix_gives_nan_and_leaves_the_others_alone():
    A = torch.from_numpy(np.random.default_rng(4).standard_normal((3, D, D))).float()
    clean = singular_values(A)
    A[1, 2, 3] = float("nan")
    A[2, 0, 0] = float("inf")
    s = singular_values(A)
    assert torch.isnan(s[1:]).all() and torch.equal(s[0], clean[0])


def test_autocast_does_not_change_the_arithmetic():
    A = torch.from_numpy(np.random.default_rng(6).standard_normal((4, D, D))).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = spectral_summary(A)
    outside = spectral_summary(A)
    assert all(torch.equal(inside[key], outside[key]) for key in outside)


def test_non_matrix_inputs_raise_a_user_error():
    for bad in (torch.ones(4), torch.ones(3, 3, dtype=torch.int64), np.ones((3, 3))):
        with pytest.raises(AblateError, match="floating tensor"):
            singular_values(bad)


# numpy float64 reference formulas, written from the definitions.
def np_effective_rank(s: np.ndarray, clamp: float | None = None) -> np.ndarray:
    if clamp is not None:
        s = np.maximum(s, clamp)
    p = s / s.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.exp(-terms.sum(-1))


def test_effective_rank_of_identity_is_d_and_of_rank_one_is_one():
    assert effective_rank(torch.eye(D)).item() == pytest.approx(D, rel=1e-12)
    u, v = torch.randn(D, 1), torch.randn(1, D)
    assert effective_rank(u @ v).item() == pytest.approx(1.0, abs=1e-6)


def test_effective_rank_of_zero_matrix_is_nan_and_d_in_research_mode():
    assert torch.isnan(effective_rank(torch.zeros(D, D)))
    assert effective_rank(torch.zeros(D, D), research=True).item() == pytest.approx(D)


@pytest.mark.parametrize("name", list(hard_spectra()))
def test_metrics_match_numpy_on_known_spectra(name):
    spectra = hard_spectra()[name]
    A = torch.from_numpy(with_spectrum(np.random.default_rng(7), spectra))
    s = np.linalg.svd(A.numpy(), compute_uv=False)
    assert np.allclose(effective_rank(A).numpy(), np_effective_rank(s), rtol=1e-6)
    assert np.allclose(effective_rank(A, research=True).numpy(),
                       np_effective_rank(s, clamp=1e-10), rtol=1e-6)
    assert np.allclose(stable_rank(A).numpy(), (s**2).sum(-1) / np.maximum(s[:, 0] ** 2, 1e-20),
                       rtol=1e-6)
    assert np.allclose(participation_ratio(A).numpy(), (s**2).sum(-1) ** 2 / (s**4).sum(-1),
                       rtol=1e-6)


def test_research_clamp_counts_tiny_singular_values():
    # Rank-2 with exact zeros: plain erank ignores them, the research clamp adds a little.
    A = torch.from_numpy(with_spectrum(np.random.default_rng(8), hard_spectra()["rank_2"]))
    assert effective_rank(A, research=True) > effective_rank(A)


def test_stable_rank_and_participation_ratio_of_zero_matrix():
    assert stable_rank(torch.zeros(D, D)).item() == 0.0
    assert torch.isnan(participation_ratio(torch.zeros(D, D)))


def test_numerical_rank_uses_numpy_default_tolerance_for_each_dtype():
    spectra = np.array([[1.0, 0.5, 1e-3, 1e-6, 1e-9, 1e-12, 0.0, 0.0]])
    A64 = torch.from_numpy(with_spectrum(np.random.default_rng(9), spectra))
    for A in (A64, A64.float()):
        assert numerical_rank(A).item() == np.linalg.matrix_rank(A.numpy())
    assert numerical_rank(A64, tol=1e-4).item() == 3
    assert numerical_rank(A64, tol=torch.tensor(0.75)).item() == 1


def test_spectral_summary_equals_the_single_metric_functions():
    A = torch.from_numpy(np.random.default_rng(10).standard_normal((2, 3, D, D))).float()
    summary = spectral_summary(A)
    assert torch.equal(summary["singular_values"], singular_values(A))
    assert torch.equal(summary["effective_rank"], effective_rank(A))
    assert torch.equal(summary["effective_rank_research"], effective_rank(A, research=True))
    assert torch.equal(summary["stable_rank"], stable_rank(A))
    assert torch.equal(summary["participation_ratio"], participation_ratio(A))
    assert torch.equal(summary["numerical_rank"], numerical_rank(A))
    assert all(value.shape[:2] == (2, 3) for value in summary.values())


def test_singular_decomposition_reconstructs_and_orders_the_spectrum():
    for dtype, shape in ((torch.float32, (3, 6, 6)), (torch.float32, (2, 3, 7)),
                         (torch.float64, (2, 7, 3))):
        A = torch.from_numpy(np.random.default_rng(11).standard_normal(shape)).to(dtype)
        left, s, right = singular_decomposition(A)
        assert torch.allclose(left @ right, A.double(), atol=1e-10)
        assert_spectrum_close(s, np.linalg.svd(A.double().numpy(), compute_uv=False))


def test_rankme_matches_garrido_formula():
    tokens = torch.from_numpy(np.random.default_rng(12).standard_normal((2, 40, 12)))
    s = np.linalg.svd(tokens.numpy(), compute_uv=False)
    p = s / s.sum(-1, keepdims=True) + 1e-7
    assert np.allclose(rankme(tokens).numpy(), np.exp(-(p * np.log(p)).sum(-1)), rtol=1e-9)


def test_residual_ratio_is_zero_for_identical_tokens_and_matches_numpy():
    same = torch.tensor([1.0, -2.0, 3.0]).expand(5, 3)
    assert residual_ratio(same).item() == pytest.approx(0.0, abs=1e-12)
    X = np.random.default_rng(13).standard_normal((4, 6, 5)) + 2.0
    expected = (np.linalg.norm(X - X.mean(-2, keepdims=True), axis=(-2, -1))
                / np.linalg.norm(X, axis=(-2, -1)))
    assert np.allclose(residual_ratio(torch.from_numpy(X)).numpy(), expected, rtol=1e-12)
    centred = X - X.mean(-2, keepdims=True)
    assert np.allclose(residual_ratio(torch.from_numpy(centred)).numpy(), 1.0)
    assert torch.isnan(residual_ratio(torch.zeros(3, 3)))


def np_research_mean_erank(Z: np.ndarray) -> float:
    s = np.linalg.svd(Z.astype(np.float64), compute_uv=False)
    return float(np_effective_rank(s, clamp=1e-10).mean())


def test_research_measure_ranks_uses_every_matrix_up_to_512_without_touching_the_rng():
    M = torch.from_numpy(np.random.default_rng(14).standard_normal((2, 16, D, D))).float()
    M[0, 3] = 0.0  # the 1e-10 clamp turns this into erank d instead of NaN
    M[1, 5, :, 2:] = 0.0  # rank 2: exact zero singular values count through the clamp
    torch.manual_seed(0)
    value = research_measure_ranks(M)
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(1))
    assert isinstance(value, float)
    assert value == pytest.approx(np_research_mean_erank(M.reshape(-1, D, D).numpy()), rel=1e-5)


def test_research_measure_ranks_subsamples_512_with_the_global_rng():
    M = torch.from_numpy(np.random.default_rng(15).standard_normal((3, 200, 4, 4))).float()
    torch.manual_seed(123)
    value = research_measure_ranks(M)
    after = torch.rand(1)
    torch.manual_seed(123)
    index = torch.randperm(600)[:512].numpy()  # the draw the spec prescribes
    assert torch.equal(after, torch.rand(1))  # the stream advanced by exactly that draw
    expected = np_research_mean_erank(M.reshape(-1, 4, 4).numpy()[index])
    assert value == pytest.approx(expected, rel=1e-5)
    # Different indices give a different mean here, so the check above pins the subset.
    assert expected != pytest.approx(np_research_mean_erank(M.reshape(-1, 4, 4).numpy()[:512]),
                                     rel=1e-5)


def test_research_measure_ranks_with_generator_is_deterministic_and_spares_global_rng():
    M = torch.from_numpy(np.random.default_rng(16).standard_normal((600, 4, 4))).float()
    torch.manual_seed(1)
    first = research_measure_ranks(M, generator=torch.Generator().manual_seed(7))
    after = torch.rand(1)
    torch.manual_seed(1)
    assert torch.equal(after, torch.rand(1))
    assert first == research_measure_ranks(M, generator=torch.Generator().manual_seed(7))


def test_research_numbers_of_the_reference_model(reference):
    # The stored per-position effective ranks and rank lists come from the research code.
    expected = torch.load(reference / "round2_frobenius_multiprobe__small_init"
                          / "expected.pt", weights_only=True)
    for case in expected.values():
        states = case["M_per_iter"]  # (8, B, L, d, d), B*L <= 512
        assert torch.allclose(effective_rank(states, research=True).float(),
                              case["erank_per_pos"], atol=1e-3)
        measured = [research_measure_ranks(M) for M in states]
        assert np.allclose(measured, np.asarray(case["research_measure_ranks"]), atol=1e-3)
