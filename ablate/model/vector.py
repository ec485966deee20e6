"""The round-1 vector baseline (spec §3.2): a pre-norm transformer iterated T times.

Not a matrix model; it exists so that research ``--model vector`` checkpoints load and
can serve as a matched baseline. Keys: ``embed``, ``pos``, ``layers.ℓ.{norm1, attn,
norm2, ffn.0, ffn.2}``, ``norm``, ``output``.

    >>> model = VectorThinker(d_model=48, n_layers=2, n_heads=4, max_len=64, vocab_size=256)
    >>> logits, info = model(torch.randint(0, 256, (1, 8)), n_iterations=2)
"""

from __future__ import annotations

import torch
from torch import nn


class _VectorBlock(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 4 * d), nn.SiLU(), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(h)
        h = h + self.attn(x, x, x, attn_mask=mask, need_weights=False)[0]
        return h + self.drop(self.ffn(self.norm2(h)))


class VectorThinker(nn.Module):
    """h = embed[x] + pos[l]; T passes of the block stack; final LayerNorm; linear out."""

    def __init__(
        self,
        d_model: int = 48,
        n_layers: int = 8,
        n_heads: int = 4,
        max_len: int = 2048,
        vocab_size: int = 50257,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        blocks = (_VectorBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.layers = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor, n_iterations: int = 1) -> tuple[torch.Tensor, dict]:
        L = input_ids.shape[1]
        h = self.embed(input_ids) + self.pos(torch.arange(L, device=input_ids.device))  # (B, L, D)
        mask = torch.full((L, L), float("-inf"), device=h.device).triu(1)
        for _ in range(n_iterations):
            for block in self.layers:
                h = block(h, mask)
        return self.output(self.norm(h)), {"ranks": [], "model_type": "vector"}


def vector_parameter_count(model: VectorThinker) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["VectorThinker", "vector_parameter_count"]
