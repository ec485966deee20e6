"""The Matrix Thinker: embeddings -> T passes of weight-tied thinking blocks -> head.

One class covers the research variants (spec §3): attention and head come from the
config. The parameter names are the research state-dict keys, so research checkpoints
load with ``strict=True``. It is a ``transformers.PreTrainedModel``, so
``save_pretrained``/``from_pretrained`` and the Auto classes work.

    >>> model = MatrixThinker(MatrixThinkerConfig(mat_dim=8, n_layers=2, n_heads=2))
    >>> out = model(torch.randint(0, 256, (2, 16)), n_iterations=8)
    >>> out.logits.shape
    torch.Size([2, 16, 256])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel

from ablate.errors import AblateError
from ablate.model.attention import ATTENTIONS, KV
from ablate.model.config import MatrixThinkerConfig
from ablate.model.embedding import build_embeddings, starting_matrices
from ablate.model.heads import MultiProbeHead, collapse_readout
from ablate.model.hooks import HookedMixin
from ablate.model.layers import MatrixRMSNorm, MultiplicativeThinkingLayer


class ThinkingBlock(nn.Module):
    """``attn`` then ``think`` (spec §2.6); the model calls the two halves itself so
    that a hook point sits between them."""

    def __init__(self, config: MatrixThinkerConfig) -> None:
        super().__init__()
        d = config.mat_dim
        self.attn = ATTENTIONS[config.attention](d, config.n_heads, config.dropout)
        self.think = MultiplicativeThinkingLayer(d, config.dropout)

    def forward(self, M: torch.Tensor) -> torch.Tensor:
        return self.think(self.attn(M)[0])


@dataclass
class ThinkerOutput:
    """``logits`` (B, L, V); ``states`` M(0..T) before the final norm when asked for;
    ``ranks`` the research rank measurement per iteration when asked for."""

    logits: torch.Tensor
    states: list[torch.Tensor] | None = None
    ranks: list[float] = field(default_factory=list)


class DecodeCache:
    """Keys/values per (iteration, layer) and the token history, for causal decoding.

    Attention is causal in every iteration, so a new position's states depend on the
    earlier positions only through their keys and values at each (t, layer).
    """

    def __init__(self) -> None:
        self.kv: dict[tuple[int, int], KV] = {}
        self.ids: torch.Tensor | None = None
        self.length = 0
        self.key_valid: torch.Tensor | None = None  # (B, length) bool, when padded

    def fork(self) -> DecodeCache:
        """An independent copy sharing tensors: the forward replaces cache entries and
        never writes into them, so a shallow copy can branch (one prompt, many conditions)."""
        copy = DecodeCache()
        copy.kv, copy.ids, copy.length, copy.key_valid = (
            dict(self.kv), self.ids, self.length, self.key_valid)
        return copy

    def reorder(self, index: torch.Tensor) -> None:
        """Keep only the batch rows in ``index`` (finished sequences can be dropped)."""
        self.kv = {key: (k[index], v[index]) for key, (k, v) in self.kv.items()}
        if self.ids is not None:
            self.ids = self.ids[index]
        if self.key_valid is not None:
            self.key_valid = self.key_valid[index]


class MatrixThinker(HookedMixin, PreTrainedModel):
    config_class = MatrixThinkerConfig
    base_model_prefix = "matrix_thinker"
    main_input_name = "input_ids"
    _no_split_modules = ["ThinkingBlock"]

    def __init__(self, config: MatrixThinkerConfig) -> None:
        super().__init__(config)
        d = config.mat_dim
        # Registration order = research draw order (spec §4) for bit-exact seeded init.
        for name, module in build_embeddings(config).items():
            self.add_module(name, module)
        self.layers = nn.ModuleList(ThinkingBlock(config) for _ in range(config.n_layers))
        self.final_norm = MatrixRMSNorm(d)
        if config.head == "collapse":
            self.collapse_W = nn.Parameter(torch.randn(d, d) * 0.02)
            self.output_head = nn.Linear(d, config.vocab_size, bias=False)
        else:
            self.output_head = MultiProbeHead(d, config.vocab_size, config.n_probes)
        self._init_hooks()
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        # Every module initialises itself in its constructor, as the research code does.
        return

    # -- pieces, so evaluation can run the backbone once and the head many times -------
    def head(self, Y: torch.Tensor) -> torch.Tensor:
        """Logits (..., V) from head inputs Y (..., d, d) (already final-normed)."""
        if self.config.head == "collapse":
            return collapse_readout(Y, self.collapse_W, self.output_head)
        return self.output_head(Y)

    def embed(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        history: torch.Tensor | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """Starting matrices M(0), (B, L, d, d)."""
        L = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(offset, offset + L, device=input_ids.device)[None]
        top = int(position_ids.max()) if position_ids.numel() else -1
        if top >= self.config.max_len:
            raise AblateError(
                f"sequence reaches position {top} but the model's max_len is "
                f"{self.config.max_len}: shorten the input (truncate prompts or lower "
                "max_new_tokens)"
            )
        return starting_matrices(self, input_ids, position_ids, history)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        n_iterations: int | None = None,
        *,
        embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: DecodeCache | None = None,
        return_states: bool = False,
        measure_ranks: bool = False,
        head: bool = True,
    ) -> ThinkerOutput:
        """Run T = ``n_iterations`` (default ``config.n_iterations``; 0 is valid) passes.

        ``embeds`` (B, L, d, d) replaces the token embedding (matrix-CODI latents).
        ``attention_mask`` (B, L_total) marks real tokens (1) and padding (0); with a
        ``cache`` it covers the cached positions too. With ``head=False`` the logits
        are left out and ``states`` ends with the head input instead.
        """
        T = self.config.n_iterations if n_iterations is None else int(n_iterations)
        if T < 0:
            raise AblateError(f"n_iterations={T} must be >= 0")
        hooked = bool(self._hook_table)
        past_len = cache.length if cache is not None else 0
        if embeds is None:
            if input_ids is None:
                raise AblateError("forward needs input_ids or embeds")
            history = cache.ids if cache is not None else None
            M = self.embed(input_ids, position_ids, history, offset=past_len)  # (B, L, d, d)
        else:
            M = embeds
        B, L = M.shape[:2]
        mask = self._attention_mask(B, L, past_len, attention_mask, cache, M.device)
        if hooked:
            M = self._hook("embed.hook_out", M)
        states = [M] if return_states else None
        ranks: list[float] = []
        for t in range(1, T + 1):
            for i, block in enumerate(self.layers):
                past = cache.kv.get((t, i)) if cache is not None else None
                M, kv = block.attn(M, mask, past)
                if cache is not None:
                    cache.kv[(t, i)] = kv
                if hooked:
                    M = self._hook(f"iter.{t}.layer.{i}.attn.hook_out", M)
                M = block.think(M)
                if hooked:
                    M = self._hook(f"iter.{t}.layer.{i}.hook_out", M)
            if hooked:
                M = self._hook(f"iter.{t}.hook_out", M)
            if states is not None:
                states.append(M)
            if measure_ranks:
                from ablate.rank import research_measure_ranks

                ranks.append(research_measure_ranks(M))
        if cache is not None:
            self._advance_cache(cache, input_ids, L)
        if hooked:
            M = self._hook("final_norm.hook_in", M)
        Y = self.final_norm(M)
        if hooked:
            Y = self._hook("head.hook_in", Y)
        if not head:
            states = (states or []) + [Y]
            return ThinkerOutput(logits=torch.empty(0), states=states, ranks=ranks)
        return ThinkerOutput(logits=self.head(Y), states=states, ranks=ranks)

    def _attention_mask(
        self,
        B: int,
        L: int,
        past_len: int,
        attention_mask: torch.Tensor | None,
        cache: DecodeCache | None,
        device: torch.device,
    ) -> torch.Tensor | None:
        """Bool (B|1, 1, L, past+L) or None for the plain causal fast path."""
        if attention_mask is None and cache is not None and cache.key_valid is not None:
            # Earlier chunks were padded: keep masking their padding in later chunks.
            attention_mask = torch.ones(B, L, dtype=torch.bool, device=device)
        if attention_mask is None and (past_len == 0 or L == 1):
            return None
        total = past_len + L
        causal = torch.ones(L, total, dtype=torch.bool, device=device).tril(past_len)
        if attention_mask is None:
            return causal[None, None]
        valid = attention_mask.to(device=device, dtype=torch.bool)
        if valid.shape[1] == L and past_len:
            prev = cache.key_valid if cache is not None else None
            if prev is None:
                prev = torch.ones(B, past_len, dtype=torch.bool, device=device)
            valid = torch.cat([prev, valid], dim=1)
        if valid.shape != (B, total):
            raise AblateError(
                f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                f"({B}, {total}) or ({B}, {L}): one entry per (cached and new) position"
            )
        if cache is not None:
            cache.key_valid = valid
        # A padded query may see nothing else; letting it see itself avoids NaN rows.
        diag = torch.zeros(L, total, dtype=torch.bool, device=device)
        diag[torch.arange(L), past_len + torch.arange(L)] = True
        return (causal[None] & valid[:, None, :] | diag[None])[:, None]  # (B, 1, L, total)

    @staticmethod
    def _advance_cache(cache: DecodeCache, input_ids: torch.Tensor | None, L: int) -> None:
        cache.length += L
        if input_ids is not None:
            cache.ids = input_ids if cache.ids is None else torch.cat([cache.ids, input_ids], 1)

    def num_parameters_trainable(self) -> int:
        """Trainable parameter count (the research ``count_params``; buffers excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def research_forward(
        self, input_ids: torch.Tensor, n_iterations: int = 1, measure_ranks: bool = False
    ) -> tuple[torch.Tensor, dict]:
        """The research call signature: ``(logits, {'ranks': [...]})``."""
        out = self(input_ids, n_iterations, measure_ranks=measure_ranks)
        info: dict = {"ranks": out.ranks}
        if self.config.head == "collapse":
            info["model_type"] = "matrix"
        return out.logits, info
