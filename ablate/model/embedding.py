"""Starting matrices M(0) for a token sequence (spec §2.7 and contextual variants).

Every variant adds the research positional term 0.1 · p_u p_vᵀ (p = pos_u[l], pos_v[l]).
The token term, for token x_l at position l:

* ``outer`` (research): u vᵀ with u = embed_u[x_l], v = embed_v[x_l]. Rank 1.
* ``rank_r``: (1/√r) Σ_{i<r} u_i v_iᵀ, where embed_u/embed_v rows hold r stacked
  d-vectors. Rank ≤ r.
* ``bigram``: (1/√c) Σ_{j<c} u_j(x_l) v_j(x_{l−j})ᵀ, with c = ``embedding_rank`` ≥ 2
  context tokens (terms with l−j < 0 are left out). A "contextualised" matrix: rows come
  from the current token, columns from it and its c−1 predecessors. Rank ≤ c.
* ``pairwise``: u vᵀ + W(x_l), where W(x_l) is a free d×d matrix per token
  (``embed_pair``, init N(0, 1/d)): every entry is a learned pairwise interaction of
  row feature i and column feature j. Full rank.

The research checkpoints all use ``outer``; its parameter names are top-level
(``embed_u.weight`` …), so the variants keep theirs top-level too.

    >>> M0 = starting_matrices(model, input_ids, positions)   # doctest: +SKIP
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ablate.model.config import MatrixThinkerConfig


def build_embeddings(config: MatrixThinkerConfig) -> dict[str, nn.Module]:
    """The embedding tables, in the research draw order (embed_u, embed_v, pos_u, pos_v)."""
    d, V, P = config.mat_dim, config.vocab_size, config.max_len
    width = {"outer": 1, "rank_r": config.embedding_rank, "bigram": config.embedding_rank}
    r = width.get(config.embedding, 1)
    tables: dict[str, nn.Module] = {
        "embed_u": nn.Embedding(V, r * d),
        "embed_v": nn.Embedding(V, r * d),
        "pos_u": nn.Embedding(P, d),
        "pos_v": nn.Embedding(P, d),
    }
    if config.embedding == "pairwise":
        pair = nn.Embedding(V, d * d)
        nn.init.normal_(pair.weight, std=1 / math.sqrt(d))
        tables["embed_pair"] = pair
    return tables


def starting_matrices(
    model: nn.Module,
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    history: torch.Tensor | None = None,
) -> torch.Tensor:
    """M(0) of shape (B, L, d, d) for ``input_ids`` (B, L) at ``positions`` (B|1, L).

    ``history`` (B, L_past) holds earlier token ids when decoding with a cache; only the
    ``bigram`` embedding reads it.
    """
    config: MatrixThinkerConfig = model.config
    d = config.mat_dim
    B, L = input_ids.shape
    u = model.embed_u(input_ids)  # (B, L, r*d)
    v = model.embed_v(input_ids)  # (B, L, r*d)
    kind = config.embedding
    if kind == "outer":
        tok = u.unsqueeze(-1) * v.unsqueeze(-2)  # (B, L, d, d)
    elif kind == "rank_r":
        r = config.embedding_rank
        tok = torch.einsum("blri,blrj->blij", u.view(B, L, r, d), v.view(B, L, r, d))
        tok = tok / math.sqrt(r)
    elif kind == "bigram":
        c = config.embedding_rank
        ids = input_ids if history is None else torch.cat([history, input_ids], dim=1)
        n_past = ids.shape[1] - L
        u = u.view(B, L, c, d)
        v_all = model.embed_v(ids).view(B, ids.shape[1], c, d)
        tok = torch.zeros(B, L, d, d, dtype=u.dtype, device=u.device)
        for j in range(c):
            start = n_past - j  # index in ids of the token j places back from the first new one
            lo = max(0, -start)  # new positions with no j-th predecessor contribute nothing
            if lo >= L:
                continue
            vj = v_all[:, start + lo : start + L, j]  # (B, L-lo, d)
            tok[:, lo:] += u[:, lo:, j].unsqueeze(-1) * vj.unsqueeze(-2)
        tok = tok / math.sqrt(c)
    else:  # pairwise
        tok = u.unsqueeze(-1) * v.unsqueeze(-2) + model.embed_pair(input_ids).view(B, L, d, d)
    pu = model.pos_u(positions)  # (B|1, L, d)
    pv = model.pos_v(positions)
    pos = pu.unsqueeze(-1) * pv.unsqueeze(-2)  # (B|1, L, d, d)
    return tok + pos * 0.1
