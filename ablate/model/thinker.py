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
from functools import partial

import torch
from torch import nn
from transformers import PreTrainedModel

from ablate.errors import AblateError
from ablate.model.attention import ATTENTIONS
from ablate.model.cache import AttentionCache, padded_causal_mask
from ablate.model.config import MatrixThinkerConfig
from ablate.model.embedding import build_embeddings, starting_matrices
from ablate.model.heads import MultiProbeHead, collapse_readout
from ablate.model.hooks import HookedMixin
from ablate.model.inference import run_blocks
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
        return self.think(self.attn(M))


@dataclass
class ThinkerOutput:
    """``logits`` (B, L, V); ``states`` M(0..T) before the final norm when asked for;
    ``ranks`` the research rank measurement per iteration when asked for."""

    logits: torch.Tensor
    states: list[torch.Tensor] | None = None
    ranks: list[float] = field(default_factory=list)


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
        # Eval-mode forwards without gradients run ablate.model.inference (the same
        # function, faster); False runs the reference blocks everywhere (for comparisons).
        self.use_inference_path = True
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
        # (Skipped while a CUDA graph is captured: reading the maximum would synchronise.)
        capturing = position_ids.is_cuda and torch.cuda.is_current_stream_capturing()
        top = int(position_ids.max()) if position_ids.numel() and not capturing else -1
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
        cache: AttentionCache | None = None,
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
            reads_history = self.config.embedding == "bigram"
            history = cache.ids if cache is not None and reads_history else None
            M = self.embed(input_ids, position_ids, history, offset=past_len)  # (B, L, d, d)
        else:
            M = embeds
        B, L = M.shape[:2]
        if cache is not None:
            mask = cache.attention_mask(B, L, attention_mask, M.device)
        else:
            mask = _mask_without_cache(B, L, attention_mask, M.device)
        if hooked:
            M = self._hook("embed.hook_out", M)
        M0 = M
        run = self._run_blocks if self._needs_reference_path() else partial(run_blocks, self)
        M, iterations, ranks = run(M, T, mask, cache, return_states, measure_ranks)
        if cache is not None:
            cache.advance(L, input_ids)
        states = [M0, *iterations] if return_states else None
        if hooked:
            M = self._hook("final_norm.hook_in", M)
        Y = self.final_norm(M)
        if hooked:
            Y = self._hook("head.hook_in", Y)
        if not head:
            states = (states or []) + [Y]
            return ThinkerOutput(logits=torch.empty(0), states=states, ranks=ranks)
        return ThinkerOutput(logits=self.head(Y), states=states, ranks=ranks)

    def _needs_reference_path(self) -> bool:
        """Training and autograd run the reference blocks; evaluation (eval mode, no
        gradients) runs ``ablate.model.inference``, unless ``use_inference_path`` is off."""
        return self.training or torch.is_grad_enabled() or not self.use_inference_path

    def _run_blocks(
        self,
        M: torch.Tensor,
        T: int,
        mask: torch.Tensor | None,
        cache: AttentionCache | None,
        keep_states: bool,
        measure_ranks: bool,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[float]]:
        """The reference loop over iterations and layers (training, autograd)."""
        hooked = bool(self._hook_table)
        states: list[torch.Tensor] = []
        ranks: list[float] = []
        for t in range(1, T + 1):
            for i, block in enumerate(self.layers):
                M = block.attn(M, mask, cache, (t, i))
                if hooked:
                    M = self._hook(f"iter.{t}.layer.{i}.attn.hook_out", M)
                M = block.think(M)
                if hooked:
                    M = self._hook(f"iter.{t}.layer.{i}.hook_out", M)
            if hooked:
                M = self._hook(f"iter.{t}.hook_out", M)
            if keep_states:
                states.append(M)
            if measure_ranks:
                from ablate.rank import research_measure_ranks

                ranks.append(research_measure_ranks(M))
        return M, states, ranks

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


def _mask_without_cache(B: int, L: int, attention_mask: torch.Tensor | None,
                        device: torch.device) -> torch.Tensor | None:
    """Bool (B, 1, L, L) for a padded batch, or None for the plain causal fast path."""
    if attention_mask is None:
        return None
    valid = attention_mask.to(device=device, dtype=torch.bool)
    if valid.shape != (B, L):
        raise AblateError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected "
                          f"({B}, {L}): one entry per position")
    causal = torch.ones(L, L, dtype=torch.bool, device=device).tril()
    return padded_causal_mask(causal, valid, 0)
