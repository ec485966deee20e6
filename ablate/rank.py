"""Rank metrics of batches of matrices, from one fast, exact singular-value computation.

Every function takes a `(..., m, n)` tensor (the states are `(B, L, d, d)`) and returns one
value per matrix, shape `(...)`, in float64, without gradient (they are measurements). The
arithmetic runs with autocast disabled, so a call under bf16 autocast gives the same
numbers as one outside it.

    >>> from ablate.rank import effective_rank, spectral_summary
    >>> effective_rank(torch.eye(4))  # doctest: +SKIP
    tensor(4., dtype=torch.float64)
    >>> spectral_summary(M)["stable_rank"].shape  # M: (B, L, d, d) -> (B, L)  # doctest: +SKIP

Fast path (`singular_values`, `singular_decomposition`): for float32, float16 and bfloat16
inputs the singular values are the square roots of the eigenvalues of the float64 Gram
matrix X^T X (X X^T when X is wide). Squaring doubles the exponent range and the relative
error, but float32 values are exact in float64 and float64 carries 29 more bits, so every
singular value is within ~1e-8 * s_1 of the float64 SVD of the same input (measured worst
case 1.2e-8 on spectra spanning 1 .. 1e-12; float32 svdvals is ~5e-7 off). float64 inputs
keep full float64 precision through LAPACK's SVD. The accuracy criterion used everywhere
(tests and bench/spectra.py) is max_i |s_i - s_i^ref| <= 1e-5 * s_1^ref per matrix, with the
reference the float64 SVD of the input cast to float64.

Measured on the project machine (2 shared CPU cores, MKL, torch 2.13): CPU ms for 2048
float32 32x32 matrices, one torch thread, medians over several runs (the cores were shared
with other jobs, load 7-9, so CPU time was the stable measure; bench/spectra.py reruns the
wall-clock comparisons):

    svdvals float32 85-94 (5e-7 * s_1 off) | svdvals float64 114 | float64 Gram + eigvalsh
    in pieces of 256 matrices 83-101 (whole batch at once 82-114; cast + bmm 15-30 of it) |
    float32 Gram + eigvalsh 48 (3e-4 * s_1 off: rejected) | numpy svd 113 | full svd
    float32 242-333, float64 353 | float64 Gram eigh + X V 207-369 | research float32 eigh
    of X X^T 126.

So per matrix no exact route is much cheaper than float32 svdvals; the Gram route costs the
same at float64 accuracy (1.4x cheaper than float64 svdvals). The wall-clock gains come from
(1) running LAPACK single-threaded and splitting the batch over `torch.get_num_threads()`
Python threads instead (torch releases the GIL inside LAPACK): up to 1.6x (best of repeats)
with 2 free cores, and on loaded cores it avoids MKL's stalled thread teams (2048 matrices:
batched eigh with vectors 18.6 s -> 0.67 s, svd 41 s -> 1.4 s); (2) one spectrum for every
metric (`spectral_summary`); (3) one decomposition for every k (`ablate.projections`).
A batched one-sided Jacobi in torch ops was ruled out: one sweep (31 rounds of 16
rotations over the whole batch) took 1.3 s CPU for the 2048 matrices, and convergence
needs 6-10 sweeps.

Definitions are in each function's docstring; `research_measure_ranks` reproduces the
research forward pass's measurement (spec section 6.1) for comparisons with logged numbers.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch

from ablate.errors import AblateError

# LAPACK calls get at most this many matrices at a time: 256 float64 32x32 matrices (2 MiB)
# stay in cache, and the Gram route on 4608 matrices at once cost 1.5x more CPU than in
# pieces of 256 (306 vs 196 ms). The pieces are also the unit handed to threads.
MATRICES_PER_CALL = 256
RESEARCH_CLAMP = 1e-10  # spec 6.1 step 3
RESEARCH_SAMPLE = 512  # spec 6.1 step 2
RANKME_EPS = 1e-7  # Garrido et al. 2023, eq. for p_k


def _autocast_off(device: torch.device) -> AbstractContextManager:
    """Autocast would run the Gram matmul in bf16; rank arithmetic must stay in float32/64."""
    return torch.autocast(device_type=device.type, enabled=False)


def _check_matrices(X: torch.Tensor, name: str = "X") -> None:
    if isinstance(X, torch.Tensor) and X.dim() >= 2 and X.is_floating_point():
        return
    got = f"shape {tuple(X.shape)}, dtype {X.dtype}" if isinstance(X, torch.Tensor) else type(X)
    raise AblateError(
        f"{name} must be a real floating tensor of shape (..., m, n), got {got}; "
        "pass a batch of matrices, e.g. states of shape (B, L, d, d)"
    )


_threads_lock = threading.Lock()
_threads_users = 0  # calls currently inside _one_thread_per_lapack_call
_threads_saved = 1  # torch.get_num_threads() before the first of them


@contextmanager
def _one_thread_per_lapack_call() -> Iterator[int]:
    """Set torch's intra-op threads to 1 for the duration; yield the count it replaced.

    On 32x32 matrices MKL's own threading has nothing to share out, and when the cores are
    busy its thread teams stall: measured under load on the 2-core machine, batched eigh
    with vectors took 18.6 s with 2 threads and 0.67 s with 1, and svd 41 s against 1.4 s.
    The setting is process-wide, so nested and concurrent callers share one
    reference-counted change, restored by the last to leave.
    """
    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = torch.get_num_threads()
            if _threads_saved != 1:
                torch.set_num_threads(1)
        _threads_users += 1
        available = _threads_saved
    try:
        yield available
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0 and _threads_saved != 1:
                torch.set_num_threads(_threads_saved)


def _map_over_batch(fn: Callable, A: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Apply a per-matrix routine to `A` (N, ...); on CPU in cache-sized pieces over threads.

    `fn` returns a tensor or a tuple of tensors with leading dimension N; the pieces are
    concatenated back in order. Each thread runs LAPACK single-threaded, so the parallelism
    is over matrices (torch releases the GIL inside LAPACK).
    """
    if A.device.type != "cpu":
        return fn(A)
    pieces = A.split(MATRICES_PER_CALL)
    with _one_thread_per_lapack_call() as available:
        parts = max(1, min(available, len(pieces)))
        if parts == 1:
            results = [fn(piece) for piece in pieces]
        else:
            results = _run_in_threads(fn, pieces, parts)
    if isinstance(results[0], torch.Tensor):
        return torch.cat(results)
    return tuple(torch.cat(outputs) for outputs in zip(*results, strict=True))


def _run_in_threads(fn: Callable, pieces: tuple[torch.Tensor, ...], parts: int) -> list:
    """[fn(piece) for piece in pieces], thread t taking pieces t, t + parts, ..."""
    results: list = [None] * len(pieces)
    errors: list[BaseException] = []
    grad_enabled = torch.is_grad_enabled()  # grad mode is thread-local: carry it over

    def work(first: int) -> None:
        try:
            with torch.set_grad_enabled(grad_enabled):
                for i in range(first, len(pieces), parts):
                    results[i] = fn(pieces[i])
        except BaseException as err:  # re-raised in the calling thread below
            errors.append(err)

    # Plain threads instead of a pool: nothing survives the call, so a fork (ray, data
    # loaders) never inherits a pool whose workers are gone.
    threads = [threading.Thread(target=work, args=(t,)) for t in range(1, parts)]
    with _ctrl_c_held():  # every thread started here is joined here
        for thread in threads:
            thread.start()
        work(0)
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return results


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Deliver a Ctrl-C (SIGINT) that arrives inside the block when the block ends.

    A KeyboardInterrupt raised while ``Thread.start`` waits for its thread (or while
    joining) would leave a thread running LAPACK that the interpreter's exit does not
    wait for (it registers with ``threading`` only once running), and a thread that
    wakes up during finalisation aborts the process ("terminate called without an
    active exception", rc -6). Signal handlers belong to the main thread: elsewhere no
    KeyboardInterrupt can arrive, and nothing is changed."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is None):  # a handler not set from Python
        yield
        return
    arrived: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if arrived:  # now, under the handler that was in place (KeyboardInterrupt)
            signal.raise_signal(signal.SIGINT)


def _finite_or_zero(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """LAPACK raises on NaN/Inf; zero those matrices and report them so results become NaN."""
    if A.dtype == torch.float64 and bool(torch.isfinite(A.sum())):
        # One reduction instead of an elementwise test: NaN and Inf entries make the sum
        # non-finite, and a sum of finite entries overflows only past ~1e308 (then the
        # test below decides).
        return A, None
    finite = torch.isfinite(A).all(dim=(-2, -1))  # (N,)
    if bool(finite.all()):
        return A, None
    return A.masked_fill(~finite[:, None, None], 0.0), ~finite


# Per-chunk work of the fast path. Everything from the float64 cast on runs inside the
# chunk, so on CPU it stays on the chunk's single-threaded worker (see _map_over_batch).


def _spectrum(A: torch.Tensor) -> torch.Tensor:
    """(N, m, n) -> (N, r) float64 singular values, descending; NaN for non-finite input."""
    exact_svd = A.dtype == torch.float64
    A, bad = _finite_or_zero(A.to(torch.float64))
    if exact_svd:
        s = torch.linalg.svdvals(A)
    else:
        G = A.mT @ A if A.shape[-2] >= A.shape[-1] else A @ A.mT  # (N, r, r), smaller Gram
        # Round-off can push eigenvalues of a singular Gram slightly below zero.
        s = torch.linalg.eigvalsh(G).clamp_min(0.0).sqrt().flip(-1)
    return s if bad is None else s.masked_fill(bad[:, None], math.nan)


def _decomposition(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, m, n) -> left (N, m, r), s (N, r), right (N, r, n), float64; see below."""
    exact_svd = A.dtype == torch.float64
    A, bad = _finite_or_zero(A.to(torch.float64))
    if exact_svd:
        U, s, Vh = torch.linalg.svd(A, full_matrices=False)
        left, right = U * s[:, None, :], Vh
    elif A.shape[-2] >= A.shape[-1]:
        eigenvalues, V = torch.linalg.eigh(A.mT @ A)
        V = V.flip(-1)  # (N, n, n), descending
        s = eigenvalues.flip(-1).clamp_min(0.0).sqrt()
        left, right = A @ V, V.mT
    else:
        eigenvalues, U = torch.linalg.eigh(A @ A.mT)
        U = U.flip(-1)  # (N, m, m), descending
        s = eigenvalues.flip(-1).clamp_min(0.0).sqrt()
        left, right = U, U.mT @ A
    if bad is not None:
        s = s.masked_fill(bad[:, None], math.nan)
        left = left.masked_fill(bad[:, None, None], math.nan)
        right = right.masked_fill(bad[:, None, None], math.nan)
    return left, s, right


def singular_values(X: torch.Tensor) -> torch.Tensor:
    """Singular values of each matrix, descending: (..., m, n) -> (..., min(m, n)) float64.

    Exact to max_i |s_i - s_i^ref| <= ~1e-8 * s_1 for float32/16 inputs (float64 Gram route,
    see the module docstring) and to float64 round-off for float64 inputs. Matrices with a
    NaN or Inf give NaN singular values instead of an error. No gradient.
    """
    _check_matrices(X)
    m, n = X.shape[-2:]
    with _autocast_off(X.device):
        s = _map_over_batch(_spectrum, X.detach().reshape(-1, m, n))
    return s.reshape(*X.shape[:-2], min(m, n))


def singular_decomposition(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One exact decomposition X = left @ right with singular values, all float64.

    Returns `(left, s, right)`: left (..., m, r), s (..., r) descending, right (..., r, n),
    r = min(m, n), such that `left[..., :k] @ right[..., :k, :]` is the best rank-k
    approximation of X. For m >= n, right = V^T and left = X V = U diag(s); for wide
    matrices left = U and right = U^T X = diag(s) V^T. The singular values stay folded into
    the side computed as a product with X because that product is accurate even where s_i
    is tiny, while U = X V / s would not be (Gram route, see the module docstring).
    float64 inputs use LAPACK's SVD. Non-finite matrices give NaN factors. Differentiable
    (through eigh/svd, so not at repeated singular values).
    """
    _check_matrices(X)
    m, n = X.shape[-2:]
    r = min(m, n)
    with _autocast_off(X.device):
        left, s, right = _map_over_batch(_decomposition, X.reshape(-1, m, n))
    lead = X.shape[:-2]
    return left.reshape(*lead, m, r), s.reshape(*lead, r), right.reshape(*lead, r, n)


# Metrics of a spectrum s (..., r), descending. Public wrappers compute s first;
# spectral_summary shares one s between all of them.


def _entropy_rank(p: torch.Tensor) -> torch.Tensor:
    # xlogy makes 0 ln 0 = 0 without masking.
    return torch.exp(-torch.special.xlogy(p, p).sum(-1))


def _effective_rank(s: torch.Tensor, research: bool) -> torch.Tensor:
    if research:
        s = s.clamp_min(RESEARCH_CLAMP)
    return _entropy_rank(s / s.sum(-1, keepdim=True))


def _stable_rank(s: torch.Tensor) -> torch.Tensor:
    squares = s.square()
    return squares.sum(-1) / squares[..., 0].clamp_min(1e-20)


def _participation_ratio(s: torch.Tensor) -> torch.Tensor:
    squares = s.square()
    return squares.sum(-1).square() / squares.square().sum(-1)


def _numerical_rank(
    s: torch.Tensor, tol: float | torch.Tensor | None, shape: torch.Size, dtype: torch.dtype
) -> torch.Tensor:
    if tol is None:
        tol = max(shape[-2:]) * torch.finfo(dtype).eps * s[..., 0]
    return (s > torch.as_tensor(tol, dtype=s.dtype, device=s.device)[..., None]).sum(-1)


def effective_rank_of_spectrum(s: torch.Tensor, *, research: bool = False) -> torch.Tensor:
    """`effective_rank` from singular values s (..., r) instead of matrices: (...) float64.

    For matrices whose spectrum is known without a decomposition (a rank-k cut keeps the
    top k singular values of its input). Scale-free: s and c·s give the same value.
    """
    return _effective_rank(s.to(torch.float64), research)


def effective_rank(X: torch.Tensor, *, research: bool = False) -> torch.Tensor:
    """Roy & Vetterli (2007) effective rank exp(-sum_i p_i ln p_i), p_i = s_i / sum_j s_j.

    (..., m, n) -> (...) float64, in [1, min(m, n)]. 0 ln 0 = 0; an all-zero matrix gives NaN.
    `research=True` first clamps every s_i at 1e-10 as the research code does (spec 6.1
    step 3), so an all-zero matrix gives min(m, n) and tiny singular values count a little.
    """
    return _effective_rank(singular_values(X), research)


def stable_rank(X: torch.Tensor) -> torch.Tensor:
    """sum_i s_i^2 / max(s_1^2, 1e-20) = ||X||_F^2 / ||X||_2^2: (..., m, n) -> (...); 0 for 0."""
    return _stable_rank(singular_values(X))


def participation_ratio(X: torch.Tensor) -> torch.Tensor:
    """(sum_i s_i^2)^2 / sum_i s_i^4: (..., m, n) -> (...) in [1, r]; NaN for a zero matrix."""
    return _participation_ratio(singular_values(X))


def numerical_rank(X: torch.Tensor, tol: float | torch.Tensor | None = None) -> torch.Tensor:
    """Number of singular values above `tol`: (..., m, n) -> (...) int64.

    Default tol = max(m, n) * eps(X.dtype) * s_1, numpy.linalg.matrix_rank's rule; `tol` may
    be a float or a tensor broadcastable to (...).
    """
    return _numerical_rank(singular_values(X), tol, X.shape, X.dtype)


def spectral_summary(X: torch.Tensor) -> dict[str, torch.Tensor]:
    """All per-matrix metrics from ONE singular-value computation.

    Returns {"singular_values": (..., r), "effective_rank", "effective_rank_research",
    "stable_rank", "participation_ratio": (...) float64, "numerical_rank": (...) int64},
    each defined as in the function of the same name.
    """
    s = singular_values(X)
    return {
        "singular_values": s,
        "effective_rank": _effective_rank(s, research=False),
        "effective_rank_research": _effective_rank(s, research=True),
        "stable_rank": _stable_rank(s),
        "participation_ratio": _participation_ratio(s),
        "numerical_rank": _numerical_rank(s, None, X.shape, X.dtype),
    }


def rankme(tokens: torch.Tensor) -> torch.Tensor:
    """RankMe (Garrido et al. 2023) of a set of token vectors: (..., N, D) -> (...) float64.

    exp(-sum_k p_k ln p_k) with p_k = s_k / ||s||_1 + 1e-7 over the min(N, D) singular
    values of the (N, D) matrix. For states, pass M.flatten(-2) so each token is one
    d*d vector. NaN when every token is zero.
    """
    s = singular_values(tokens)
    return _entropy_rank(s / s.sum(-1, keepdim=True) + RANKME_EPS)


def residual_ratio(tokens: torch.Tensor) -> torch.Tensor:
    """Rank-collapse residual of Dong et al. (2021) in the Frobenius norm: (..., N, D) -> (...).

    ||X - 1 x^T||_F / ||X||_F with x = argmin_x ||X - 1 x^T||_F = the mean token, so the
    numerator is the distance from X to the nearest matrix whose rows are all equal.
    0 means every token is the same vector (full collapse); a centred set gives 1. The
    paper's analysis uses the composite l1,inf norm, whose minimiser has no closed form;
    the Frobenius version is what can be computed exactly. NaN when X is all zero.
    """
    _check_matrices(tokens, "tokens")
    with _autocast_off(tokens.device):
        A = tokens.to(torch.float64)
        residual = A - A.mean(dim=-2, keepdim=True)
        return torch.linalg.matrix_norm(residual) / torch.linalg.matrix_norm(A)


def research_measure_ranks(M: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """The research forward pass's rank measurement of one state (spec 6.1), as a float.

    M (..., d, d), e.g. (B, L, d, d): detached, float32, viewed as N matrices; if N > 512,
    keep the first 512 of `torch.randperm(N, device=M.device)` (global RNG unless
    `generator` is given, so it advances the stream exactly as the research code does);
    then float32 `svdvals`, clamp at 1e-10, entropy effective rank, arithmetic mean.
    """
    _check_matrices(M, "M")
    d = M.shape[-1]
    with _autocast_off(M.device):
        Z = M.detach().float().reshape(-1, M.shape[-2], d)  # (N, d, d)
        N = Z.shape[0]
        if N > RESEARCH_SAMPLE:
            Z = Z[torch.randperm(N, generator=generator, device=M.device)[:RESEARCH_SAMPLE]]
        s = torch.linalg.svdvals(Z).clamp_min(RESEARCH_CLAMP)
        p = s / s.sum(-1, keepdim=True)
        ranks = torch.exp(-(p * torch.log(p)).sum(-1))
        return ranks.mean().item()
