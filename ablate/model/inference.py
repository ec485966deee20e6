"""The thinking blocks without autograd, in cache-sized chunks: the evaluation forward.

At d = 32 every operation of a block acts on B·L small matrices. Run over all positions
at once (the reference ``ThinkingBlock`` code, which training uses), each of the ~40
elementwise passes of a block streams megabytes through memory and the left products
``A X`` each need a transposing copy. Here the states are held row-outer, (d, B, L, d),
so that over a group of positions both ``A X`` and ``X B`` are one matrix product on the
storage as it is, projections that read the same input share one product, and every
per-position step (norms, projections, the thinking layer) runs on chunks of positions
whose tensors stay in the core's cache (``CPU_CHUNK_ENTRIES``); only attention sees all
positions. On CUDA there is one chunk (the whole batch). Hook points fire on the full
tensors between steps, as in the reference path (a hook gets the (B, L, d, d) view of
the row-outer storage). The results equal the
reference path up to float round-off (tests/model/test_inference.py); bench/forward.py
measures the speed.

    >>> M, states, ranks = run_blocks(model, M0, T=8, mask=None, cache=None,
    ...                               keep_states=True, measure_ranks=False)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ablate.model.layers import RowThenColProjection

if TYPE_CHECKING:
    from ablate.model.attention import _MatrixAttention
    from ablate.model.cache import AttentionCache
    from ablate.model.thinker import MatrixThinker, ThinkingBlock

# Matrix entries per chunk on CPU: 65536 float32 (256 KiB per (d, n, d) tensor, 64
# positions at d = 32, 1024 at d = 8), so a thinking layer's working set stays in a
# core's L2 cache. Measured on the 2-core machine (one thread, thinking layer alone,
# d = 32): 52 GFLOP/s at 64 positions, 28 at 256, 20 at 1024, against 78 for torch.bmm
# on 32x32 matrices; smaller chunks pay more per-operation overhead.
CPU_CHUNK_ENTRIES = 65536


def chunks(B: int, L: int, size: int) -> list[tuple[slice, slice]]:
    """(rows, positions) slices covering a (B, L) grid in pieces of about ``size``
    positions: spans of one row when L >= size, else groups of whole rows (so a chunk of
    a (d, B, L, d) tensor is always viewable as (d, n, d))."""
    if size <= L:
        return [(slice(b, b + 1), slice(lo, min(lo + size, L)))
                for b in range(B) for lo in range(0, L, size)]
    per = max(1, size // max(L, 1))
    return [(slice(b, min(b + per, B)), slice(0, L)) for b in range(0, B, per)]


def row_outer(M: torch.Tensor) -> torch.Tensor:
    """(B, L, d, d) -> (d, B, L, d) storage (a copy unless M is already a view of one)."""
    return M.permute(2, 0, 1, 3).contiguous()


def logical(R: torch.Tensor) -> torch.Tensor:
    """The (B, L, d, d) view of row-outer storage (d, B, L, d)."""
    return R.permute(1, 2, 0, 3)


def _flat(R: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
    """The chunk R[:, rows, cols] as (d, n, d), a view."""
    d = R.shape[0]
    return R[:, rows, cols].view(d, -1, d)


def _norm(X: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """MatrixRMSNorm of the n matrices of X (d, n, d); ``weight`` is its gain as (d, 1, d)."""
    r = X.pow(2).mean(dim=(0, 2), keepdim=True).add_(eps).sqrt_()  # (1, n, 1)
    return torch.div(X, r).mul_(weight)


def _project(p: RowThenColProjection, X: torch.Tensor) -> torch.Tensor:
    """silu(A X) B for the n matrices of X (d, n, d): two matrix products, no copies."""
    d = X.shape[0]
    Y = F.silu(torch.mm(p.A, X.reshape(d, -1)), inplace=True)  # (d, n*d): A X_j side by side
    return torch.mm(Y.view(-1, d), p.B).view(d, -1, d)  # rows of every X_j times B


def _project_each(A: torch.Tensor, B: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """silu(A_p X) B_p for P projections packed as A (P*d, d) and B (P, d, d): (P, d, n, d)
    from X (d, n, d), with one product for all the A_p and one batched one for the B_p."""
    d, P = X.shape[0], B.shape[0]
    Y = F.silu(torch.mm(A, X.reshape(d, -1)), inplace=True)  # (P*d, n*d)
    return torch.bmm(Y.view(P, -1, d), B).view(P, d, -1, d)


class _BlockWeights:
    """A block's weights in the layouts the chunked steps use. Blocks are weight-tied
    across iterations, so ``run_blocks`` packs them once per forward, not per call (the
    arithmetic is the same as with weights packed at every call)."""

    def __init__(self, block: ThinkingBlock) -> None:
        attn, think = block.attn, block.think
        qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
        self.qkv = torch.cat([p.A for p in qkv]), torch.stack([p.B for p in qkv])
        four = (think.delta_gate, think.delta_value, think.gamma_gate, think.gamma_value)
        self.gates_values = torch.cat([p.A for p in four]), torch.stack([p.B for p in four])
        ups = (think.delta_up, think.gamma_up)
        self.up = torch.stack([p.A for p in ups]), torch.stack([p.B for p in ups])
        self.scale = think.scale.clamp(0.01, 0.5)
        self.gate_w = torch.stack([think.gate_mult_W, think.gate_write_W])[:, :, None, :]
        self.gate_bias = think.gate_mult_bias, think.gate_write_bias
        self.attn_norm = attn.norm.weight[:, None, :], attn.norm.eps
        self.think_norm = think.norm.weight[:, None, :], think.norm.eps
        self.identity = think.I[:, None, :]
        self.key_col, self.val_col = think.key_col[:, 0], think.val_col[:, 0]


def _think(weights: _BlockWeights, M: torch.Tensor,
           out: torch.Tensor | None = None) -> torch.Tensor:
    """The thinking layer (spec §2.5) on M (d, n, d): M + update, into ``out`` if given;
    ``weights`` are its block's, packed."""
    X = _norm(M, *weights.think_norm)  # (d, n, d)
    d = X.shape[0]
    gates_values = _project_each(*weights.gates_values, X)  # (4, d, n, d)
    inner = F.silu(gates_values[0::2], inplace=True).mul_(gates_values[1::2])  # (2, d, n, d)
    A, B = weights.up
    Y = F.silu(torch.bmm(A, inner.reshape(2, d, -1)), inplace=True)  # (2, d, n*d)
    factors = torch.bmm(Y.view(2, -1, d), B).view(2, d, -1, d)  # Δ, Γ before s
    factors = factors.mul_(weights.scale).add_(weights.identity).transpose(1, 2)  # I+Δ, I+Γ
    Xm = X.transpose(0, 1)  # (n, d, d): the matrices themselves
    update = torch.bmm(torch.bmm(factors[0], Xm), factors[1])  # (I+Δ) X (I+Γ), (n, d, d)
    rows = X.view(-1, d)  # (d*n, d): every row of every matrix
    k = torch.mv(rows, weights.key_col).view(d, -1)  # (d, n): X_j key_col
    v = torch.mv(rows, weights.val_col).view(d, -1)
    gates = (X * weights.gate_w).sum(1).sum(-1)  # (2, n): <W, X_j> for both gates
    # One sigmoid per gate: on a (2, n) tensor the vectorised kernel would split the
    # elements differently (its scalar tail rounds differently), changing the records.
    g_m = torch.sigmoid(gates[0] + weights.gate_bias[0])  # (n,)
    g_w = torch.sigmoid(gates[1] + weights.gate_bias[1])
    if update.dtype != X.dtype:
        update = update.to(X.dtype)  # float32 under autocast, as on the reference path
    update.sub_(Xm).mul_(g_m[:, None, None])  # g_m (m_mult - X)
    update.addcmul_((v * g_w).t()[:, :, None], k.t()[:, None, :])  # + g_w v kᵀ
    return torch.add(M, update.transpose(0, 1), out=out)


def _heads(attn: _MatrixAttention, P: torch.Tensor, nb: int, nl: int) -> torch.Tensor:
    """A projected chunk (d, n, d) as (nb, H, nl, h, d), the layout of q, k and v."""
    H, h, d = attn.n_heads, attn.head_dim, attn.d
    return P.view(H, h, nb, nl, d).permute(2, 0, 3, 1, 4)


def _attention(
    model: MatrixThinker,
    attn: _MatrixAttention,
    R: torch.Tensor,
    slot: tuple[int, int],
    mask: torch.Tensor | None,
    cache: AttentionCache | None,
    pieces: list[tuple[slice, slice]],
    buffers: dict[str, torch.Tensor],
    weights: _BlockWeights,
) -> torch.Tensor:
    """The attention output O (B, H, L, h, d) of every position of R (d, B, L, d)."""
    d, B, L, _ = R.shape
    shape = torch.Size((B, attn.n_heads, L, attn.head_dim, d))
    # Under autocast, queries, keys and values are kept (and cached) in its dtype, as the
    # projections that produce them return it.
    autocast = R.is_cuda and torch.is_autocast_enabled("cuda")
    dtype = torch.get_autocast_dtype("cuda") if autocast else R.dtype
    qkv = buffers.get("qkv")
    if qkv is None or qkv.shape[1:] != shape or qkv.dtype != dtype:
        buffers["qkv"] = qkv = R.new_empty((3, *shape), dtype=dtype)
    q, k, v = qkv.unbind(0)
    reserved = cache.reserve(slot, shape, q) if cache is not None else None
    if reserved is not None:
        k, v = reserved  # written straight into the cache
    H, h = attn.n_heads, attn.head_dim
    for rows, cols in pieces:
        X = _norm(_flat(R, rows, cols), *weights.attn_norm)
        nb, nl = rows.stop - rows.start, cols.stop - cols.start
        projected = _project_each(*weights.qkv, X)  # (3, d, n, d): q, k, v
        if reserved is None:  # one copy into the (3, B, H, L, h, d) layout
            qkv[:, rows, :, cols] = projected.view(3, H, h, nb, nl, d).permute(0, 3, 1, 4, 2, 5)
        else:
            for P, dst in zip(projected, (q, k, v), strict=True):
                dst[rows, :, cols] = _heads(attn, P, nb, nl)
    if cache is None:
        return attn.attend(q, k, v, mask, causal=mask is None)
    return cache.attend(slot, attn, q, k, v, mask)


def _attention_output(attn: _MatrixAttention, O: torch.Tensor, R: torch.Tensor,
                      rows: slice, cols: slice) -> torch.Tensor:
    """M + o_proj(merged O) for one chunk: (d, n, d)."""
    d = attn.d
    merged = O[rows, :, cols].permute(1, 3, 0, 2, 4).reshape(d, -1, d)  # (d, n, d)
    return torch.add(_flat(R, rows, cols), _project(attn.o_proj, merged))  # R's dtype


def _fire(model: MatrixThinker, name: str, R: torch.Tensor) -> torch.Tensor:
    """Run the hooks at ``name`` on the (B, L, d, d) view; row-outer result."""
    if not model.has_hook(name):
        return R
    view = logical(R)
    out = model._hook(name, view)
    return R if out is view else row_outer(out)


def run_blocks(
    model: MatrixThinker,
    M: torch.Tensor,
    T: int,
    mask: torch.Tensor | None,
    cache: AttentionCache | None,
    keep_states: bool,
    measure_ranks: bool,
) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
    """T passes of the blocks from M(0) (B, L, d, d): (M(T), [M(1..T)] when
    ``keep_states``, research rank measurements when ``measure_ranks``)."""
    B, L, d, _ = M.shape
    R = row_outer(M)  # (d, B, L, d)
    size = max(1, CPU_CHUNK_ENTRIES // d**2) if M.device.type == "cpu" else max(B * L, 1)
    pieces = chunks(B, L, size)
    buffers: dict[str, torch.Tensor] = {}
    weights = [_BlockWeights(block) for block in model.layers]
    states: list[torch.Tensor] = []
    ranks: list[float] = []
    for t in range(1, T + 1):
        for i, block in enumerate(model.layers):
            O = _attention(model, block.attn, R, (t, i), mask, cache, pieces, buffers,
                           weights[i])
            out = torch.empty_like(R)
            attn_name = f"iter.{t}.layer.{i}.attn.hook_out"
            if model.has_hook(attn_name):  # the sublayer output must be whole for the hook
                for rows, cols in pieces:
                    _flat(out, rows, cols).copy_(_attention_output(block.attn, O, R, rows, cols))
                R, out = _fire(model, attn_name, out), torch.empty_like(R)
                for rows, cols in pieces:
                    _think(weights[i], _flat(R, rows, cols),
                           out=_flat(out, rows, cols))
            else:
                for rows, cols in pieces:
                    attended = _attention_output(block.attn, O, R, rows, cols)
                    _think(weights[i], attended, out=_flat(out, rows, cols))
            del O
            R = _fire(model, f"iter.{t}.layer.{i}.hook_out", out)
        R = _fire(model, f"iter.{t}.hook_out", R)
        if keep_states:
            states.append(logical(R))
        if measure_ranks:
            from ablate.rank import research_measure_ranks

            ranks.append(research_measure_ranks(logical(R)))
    return logical(R), states, ranks
