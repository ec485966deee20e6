"""Research matrix-CODI checkpoints (``run_matrix_codi.py``, spec §8-§9) on GPT-2.

A file holds ``{"model": state_dict, "cfg": dict, "use_matrix_bottleneck": bool,
"tokenizer_len": int}`` (the smoke test only ``{"model": ...}``). It is read with
``torch.load(weights_only=True)``: tensors, plain containers (the cfg's ``betas`` tuple
included) and a few harmless builtins; anything else is refused in one line, because
ablate never unpickles code. GPT-2 is built locally from a ``GPT2Config`` whose sizes come
from the weights (hidden size, layers, positions, vocabulary; heads from a local GPT-2
``config.json``, the cfg, a flag, or the GPT-2 family table); nothing is downloaded.

Latent loop (spec §9): ``question + "\\n" + <bot>`` through GPT-2; the last-layer, post-
``ln_f`` state at the last position goes through ``F`` (the matrix bottleneck, or the
vanilla ``feedback_proj`` LayerNorm) and is appended as ``inputs_embeds`` (GPT-2 adds its
position embedding); repeat ``n_latents`` times; then ``<eot> The answer is:``. The
research re-runs the growing sequence without a cache; this uses GPT-2's
``past_key_values`` by default, which is the same function under causal attention (tested
against ``use_cache=False`` to float round-off). Positions count real tokens per row, so
left padding never shifts a question: batched results equal the research's batch-size-1
evaluation. Everything runs in float32 (the research evaluated under CUDA bf16 autocast,
so its logged accuracies can differ by a few answers).

    >>> codi = load_research_codi("best_run_b_matrix.pt", tokenizer="/gpt2")  # doctest: +SKIP
    >>> outcomes = evaluate_items(codi, items, n_latents=6)                  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import pathlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ablate.codi.bottleneck import MatrixBottleneck, infer_readout
from ablate.codi.evaluation import MAX_NEW_TOKENS, Solution
from ablate.codi.losses import token_logprobs
from ablate.codi.sequences import (
    BOT,
    EOT,
    CodiBatch,
    CodiExample,
    CodiLayout,
    Padded,
    collate,
    target_mask,
)
from ablate.config import resolve_device
from ablate.errors import AblateError
from ablate.model.hooks import HookedMixin, HookFn
from ablate.tokenizer import HF_TOKENIZER_FILES, HuggingFaceTokenizer, load_tokenizer

logger = logging.getLogger(__name__)

LATENT = "<latent>"
CODI_SPECIALS = (BOT, EOT, LATENT)
# Hidden size -> heads of the released GPT-2 sizes (small, medium, large, xl).
GPT2_HEADS = {768: 12, 1024: 16, 1280: 20, 1600: 25}
# Plain builtins a research cfg may pickle; none of them can run code when rebuilt.
SAFE_GLOBALS = [set, frozenset, complex, range, slice, pathlib.PosixPath, pathlib.PurePosixPath]
PREFIXES = ("module.", "_orig_mod.")
# Attention-mask buffers some transformers versions put in GPT-2 state dicts.
MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")
RESEARCH_LAYOUT = CodiLayout(question_suffix="\n", cue=" The answer is:", answer_suffix="")


def read_research_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict without wrapper prefixes, the rest of the file) of a research .pt file."""
    source = Path(path)
    if not source.is_file():
        raise AblateError(f"research CODI checkpoint {source} does not exist; pass the .pt file "
                          "written by run_matrix_codi.py (best_run_b_matrix.pt)")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # the unpickler raises UnpicklingError, RuntimeError, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise AblateError(
            f"{source} cannot be read with weights_only=True ({first}); ablate never unpickles "
            "code: re-save it as {'model': state_dict, 'cfg': plain dict, ...}"
        ) from err
    if not isinstance(obj, dict):
        raise AblateError(f"{source} holds a {type(obj).__name__}, not a dict; expected a "
                          "state dict or {'model': state_dict, 'cfg': ...}")
    meta: dict[str, Any] = {}
    state: Any = obj
    for key in ("model", "model_state_dict", "state_dict"):
        if isinstance(obj.get(key), dict):
            state = obj[key]
            meta = {k: v for k, v in obj.items() if k != key}
            break
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise AblateError(f"{source}: the state dict holds non-tensor entries; expected "
                          "{'model': {name: tensor}}")
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return dict(state), meta


def gpt2_config(state: dict[str, torch.Tensor], cfg: dict[str, Any], source: str, *,
                base: str | Path | None = None, n_head: int | None = None) -> Any:
    """A ``GPT2Config`` whose sizes match ``state`` (``gpt2.*`` keys)."""
    from transformers import GPT2Config

    wte = state.get("gpt2.transformer.wte.weight")
    wpe = state.get("gpt2.transformer.wpe.weight")
    if wte is None or wpe is None:
        raise AblateError(f"{source} has no gpt2.transformer.wte/wpe weights; it is not a "
                          "matrix-CODI checkpoint (keys start with 'gpt2.', 'bottleneck.')")
    layers = {int(k.split(".")[3]) for k in state if k.startswith("gpt2.transformer.h.")}
    vocab, hidden = wte.shape
    settings: dict[str, Any] = {}
    if base is not None:
        config_file = Path(base) / "config.json"
        if not config_file.is_file():
            raise AblateError(f"{config_file} not found; --base must be a local GPT-2 directory "
                              "with config.json")
        settings = GPT2Config.from_json_file(str(config_file)).to_dict()
    heads = n_head or settings.get("n_head") or cfg.get("n_head") or GPT2_HEADS.get(hidden)
    if not heads or hidden % int(heads):
        raise AblateError(f"{source}: cannot tell the number of attention heads for hidden size "
                          f"{hidden}; pass --n-head (a divisor of {hidden}) or --base with a "
                          "GPT-2 config.json")
    inner = state["gpt2.transformer.h.0.mlp.c_fc.weight"].shape[1] if layers else 4 * hidden
    return GPT2Config(
        vocab_size=vocab, n_positions=wpe.shape[0], n_embd=hidden,
        n_layer=max(layers) + 1 if layers else 0, n_head=int(heads), n_inner=inner,
        activation_function=settings.get("activation_function", "gelu_new"),
        layer_norm_epsilon=settings.get("layer_norm_epsilon", 1e-5),
        bos_token_id=None, eos_token_id=None,
    )


def cache_keyword(forward: Any) -> str:
    """What a Hugging Face model's ``forward`` calls its key/value cache: ``cache`` in
    transformers 5.x (where ``past_key_values`` is deprecated, to be removed), else
    ``past_key_values``."""
    parameters = inspect.signature(forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


@dataclass
class _Sequence:
    """Everything fed so far (embeds, mask, positions) and GPT-2's cache when used."""

    embeds: list[torch.Tensor] = field(default_factory=list)
    masks: list[torch.Tensor] = field(default_factory=list)
    positions: list[torch.Tensor] = field(default_factory=list)
    cache: Any = None


class ResearchCodi(HookedMixin, nn.Module):
    """GPT-2 (``gpt2.*``) plus ``bottleneck.*`` (matrix run) or ``feedback_proj`` (vanilla).
    With the bottleneck, hook points ``latent.{j}`` (``hooks()``) see each thought Z_j
    (B, d, d) before its readout; the vanilla run has no matrix thoughts to hook."""

    def __init__(self, gpt2: nn.Module, tokenizer: HuggingFaceTokenizer, *,
                 bottleneck: MatrixBottleneck | None, n_latents: int = 6) -> None:
        super().__init__()
        self.gpt2 = gpt2
        hidden = gpt2.config.n_embd
        if bottleneck is not None:
            self.bottleneck = bottleneck
        else:
            self.feedback_proj = nn.LayerNorm(hidden)
        self.tokenizer = tokenizer
        self.n_latents = n_latents
        self.bot_id = tokenizer.special_id(BOT)
        self.eot_id = tokenizer.special_id(EOT)
        eos = tokenizer.eos_id
        self.pad_id = eos if eos is not None else self.eot_id
        self.use_cache = True
        self._init_hooks()

    @property
    def layout(self) -> CodiLayout:
        return RESEARCH_LAYOUT

    @property
    def mat_dim(self) -> int | None:
        return self.bottleneck.d if hasattr(self, "bottleneck") else None

    def feed(self, h: torch.Tensor, j: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next input embedding (B, D) and the observable Z (B, d, d) or None; Z passes
        the hook point ``latent.{j}`` before its readout."""
        if not hasattr(self, "bottleneck"):
            return self.feedback_proj(h), None
        Z = self.bottleneck.matrix(h)
        if self._hook_table:
            Z = self._hook(f"latent.{j}", Z)
        return self.bottleneck.readout(Z), Z

    @functools.cached_property
    def _cache_argument(self) -> str:
        return cache_keyword(self.gpt2.forward)

    def _run(self, seq: _Sequence, embeds: torch.Tensor, mask: torch.Tensor,
             positions: torch.Tensor, *, logits: bool) -> torch.Tensor:
        """Append a chunk; last hidden states (B, L, D) or logits (B, L, V) of it."""
        seq.embeds.append(embeds)
        seq.masks.append(mask)
        seq.positions.append(positions)
        full_mask = torch.cat(seq.masks, 1).long()
        if self.use_cache:
            from transformers import DynamicCache

            seq.cache = seq.cache if seq.cache is not None else DynamicCache()
            kwargs = dict(inputs_embeds=embeds, position_ids=positions, use_cache=True)
            kwargs[self._cache_argument] = seq.cache
        else:
            kwargs = dict(inputs_embeds=torch.cat(seq.embeds, 1),
                          position_ids=torch.cat(seq.positions, 1), use_cache=False)
        L = embeds.shape[1]
        if logits:
            return self.gpt2(attention_mask=full_mask, **kwargs).logits[:, -L:]
        return self.gpt2.transformer(attention_mask=full_mask, **kwargs).last_hidden_state[:, -L:]

    def think(self, question: Padded, n_latents: int,
              ) -> tuple[_Sequence, list[torch.Tensor], torch.Tensor | None, torch.Tensor]:
        """After the latent loop: the sequence so far, the observables Z_j (B, d, d), the
        last latent's embedding (B, 1, D) still to be fed (None without latents) and each
        row's next position (B,)."""
        B = question.ids.shape[0]
        bot = torch.full((B, 1), self.bot_id, dtype=torch.long, device=question.ids.device)
        ids = torch.cat([question.ids, bot], 1)
        mask = torch.cat([question.mask, torch.ones_like(bot, dtype=torch.bool)], 1)
        positions = (mask.long().cumsum(1) - 1).clamp_min(0)
        seq = _Sequence()
        h = self._run(seq, self.gpt2.transformer.wte(ids), mask, positions, logits=False)[:, -1]
        nxt = positions[:, -1] + 1  # (B,)
        latents: list[torch.Tensor] = []
        pending = None
        ones = torch.ones(B, 1, dtype=torch.bool, device=ids.device)
        for j in range(n_latents):
            e, Z = self.feed(h, j)  # (B, D), (B, d, d) | None
            if Z is not None:
                latents.append(Z)
            if j < n_latents - 1:
                h = self._run(seq, e[:, None], ones, nxt[:, None], logits=False)[:, -1]
            else:  # the last latent goes in with the tail, as the research does
                pending = e[:, None]
            nxt = nxt + 1
        return seq, latents, pending, nxt

    def _chunk(self, tokens: Padded, start: torch.Tensor, lead: torch.Tensor | None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(embeds, mask, positions) of ``lead`` (B, 1, D) and right-padded ``tokens``
        whose first token sits at ``start`` (B,); a lead sits one position earlier."""
        L = tokens.ids.shape[1]
        offsets = torch.arange(L, device=tokens.ids.device)[None]
        positions = torch.where(tokens.mask, start[:, None] + offsets, 0)
        embeds = self.gpt2.transformer.wte(tokens.ids)
        mask = tokens.mask
        if lead is not None:
            embeds = torch.cat([lead, embeds], 1)
            mask = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
            positions = torch.cat([start[:, None] - 1, positions], 1)
        return embeds, mask, positions

    def joint_logits(self, seq: _Sequence, tokens: Padded, start: torch.Tensor,
                     lead: torch.Tensor | None) -> torch.Tensor:
        """Logits (B, L, V) of ``tokens`` from one uncached pass over everything, the
        research's joint pass; ``seq`` is left as it was."""
        embeds, mask, positions = self._chunk(tokens, start, lead)
        out = self.gpt2(inputs_embeds=torch.cat([*seq.embeds, embeds], 1),
                        attention_mask=torch.cat([*seq.masks, mask], 1).long(),
                        position_ids=torch.cat([*seq.positions, positions], 1), use_cache=False)
        return out.logits[:, -tokens.ids.shape[1]:]

    @torch.no_grad()
    def solve(self, examples: Sequence[CodiExample], n_latents: int, *,
              hooks: Sequence[Mapping[str, HookFn]] = ({},),
              max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 16,
              ) -> list[list[Solution]]:
        """Per hook table (a condition's hooks at ``latent.*``), per example: latents,
        teacher-forced gold-answer score, greedy answer."""
        self.check_positions(examples, n_latents, max_new_tokens)
        device = next(self.parameters()).device
        solutions: list[list[Solution]] = [[] for _ in hooks]
        for begin in range(0, len(examples), batch_size):
            batch = collate(list(examples[begin:begin + batch_size]), self.pad_id).to(device)
            for table, bucket in zip(hooks, solutions, strict=True):
                with self.hooks(table):
                    bucket += self._solve_batch(batch, n_latents, max_new_tokens)
        return solutions

    def check_positions(self, examples: Sequence[CodiExample], n_latents: int,
                        max_new_tokens: int) -> None:
        """Raise before any work unless every problem fits GPT-2's position table: the
        question, <bot>, the latents, then the longer of the scored tail and the prompt
        plus the generated tokens (positions count from 0)."""
        positions = self.gpt2.config.n_positions
        prompt = 1 + len(self.tokenizer.encode(self.layout.cue))  # <eot> and the cue
        for example in examples:
            after = max(len(example.tail_ids), prompt + max_new_tokens - 1)
            top = len(example.question_ids) + n_latents + after
            if top < positions:
                continue
            room = positions - 1 - n_latents - after
            fix = (f"keep the last {room} question tokens with --max-question-tokens {room} "
                   "(max_question_tokens in a study file)" if room > 0 else
                   f"use fewer than {n_latents} latents (--latents)")
            raise AblateError(
                f"a problem of {len(example.question_ids)} question tokens needs GPT-2 "
                f"position {top} (with <bot>, {n_latents} latents and up to {after} cue and "
                f"answer tokens) but this research CODI checkpoint has n_positions={positions}; "
                f"{fix}")

    def _solve_batch(self, batch: CodiBatch, n_latents: int,
                     max_new_tokens: int) -> list[Solution]:
        eos = self.tokenizer.eos_id
        prompt = [self.eot_id] + self.tokenizer.encode(self.layout.cue)
        solutions: list[Solution] = []
        seq, latents, pending, nxt = self.think(batch.question, n_latents)
        logits = self.joint_logits(seq, batch.tail, nxt, pending)
        answer = target_mask(batch.tail.mask, batch.tail_cue)[:, :-1]
        logp = token_logprobs(logits, batch.tail.ids)
        hits = (logits[:, :-1].argmax(-1) == batch.tail.ids[:, 1:]) | ~answer
        generated = self._generate(seq, pending, nxt, prompt, max_new_tokens, eos)
        stack = torch.stack(latents, 1).float().cpu() if latents else None
        for row, ids in enumerate(generated):
            if ids and ids[-1] == eos:
                ids = ids[:-1]
            solutions.append(Solution(
                generation=self.tokenizer.hf_tokenizer.decode(ids, skip_special_tokens=True),
                latents=None if self.mat_dim is None else (
                    stack[row] if stack is not None else torch.zeros(0, self.mat_dim,
                                                                     self.mat_dim)),
                answer_loglik=float(logp[row][answer[row]].sum()),
                tf_exact_match=bool(hits[row].all()),
                n_question_tokens=int(batch.question.mask[row].sum()),
                n_answer_tokens=int(answer[row].sum()),
            ))
        return solutions

    def _generate(self, seq: _Sequence, pending: torch.Tensor | None, nxt: torch.Tensor,
                  prompt: list[int], max_new_tokens: int, eos: int | None) -> list[list[int]]:
        """Greedy decoding after ``<eot> The answer is:``; a row stops at EOS."""
        B = nxt.shape[0]
        ids = torch.tensor([prompt] * B, dtype=torch.long, device=nxt.device)
        chunk = self._chunk(Padded(ids, torch.ones_like(ids, dtype=torch.bool)), nxt, pending)
        logits = self._run(seq, *chunk, logits=True)
        nxt = nxt + len(prompt)
        outputs: list[list[int]] = [[] for _ in range(B)]
        done = [False] * B
        for step in range(max_new_tokens):
            token = logits[:, -1].argmax(-1)  # (B,)
            for row, t in enumerate(token.tolist()):
                if not done[row]:
                    outputs[row].append(t)
                    done[row] = t == eos
            if all(done) or step == max_new_tokens - 1:
                break
            step_ids = token[:, None]
            chunk = self._chunk(Padded(step_ids, torch.ones_like(step_ids, dtype=torch.bool)),
                                nxt, None)
            logits = self._run(seq, *chunk, logits=True)
            nxt = nxt + 1
        return outputs


def load_research_codi(path: str | Path, *, tokenizer: str | Path | None = None,
                       base: str | Path | None = None, n_head: int | None = None,
                       device: str | torch.device = "cpu") -> ResearchCodi:
    """A ``ResearchCodi`` in eval mode from a research .pt file.

    ``tokenizer``: a local directory with the GPT-2 tokenizer files (the base model's, or
    one saved with the CODI specials); defaults to ``base``, then the file's directory.
    """
    device = resolve_device(device)
    source = str(path)
    state, meta = read_research_file(path)
    cfg = meta.get("cfg") if isinstance(meta.get("cfg"), dict) else {}
    config = gpt2_config(state, cfg, source, base=base, n_head=n_head)
    directory = Path(tokenizer or base or Path(path).parent)
    if tokenizer is None and base is None and not any(
            (directory / name).is_file() for name in HF_TOKENIZER_FILES):
        raise AblateError(f"{source} needs the GPT-2 tokenizer it was trained with and none is "
                          f"next to it in {directory}; pass --tokenizer with a local GPT-2 "
                          "directory (nothing is downloaded)")
    tok = _codi_tokenizer(directory, source, rows=config.vocab_size,
                          stated=meta.get("tokenizer_len"))
    from transformers import GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(config)
    bottleneck = None
    use_matrix = meta.get("use_matrix_bottleneck", any(k.startswith("bottleneck.") for k in state))
    if use_matrix:
        bottleneck = _bottleneck(state, cfg, config.n_embd, source)
    codi = ResearchCodi(gpt2, tok, bottleneck=bottleneck, n_latents=int(cfg.get("n_latents", 6)))
    expected = set(codi.state_dict())
    state = {k: v for k, v in state.items() if k in expected or not k.endswith(MASK_BUFFERS)}
    if "gpt2.lm_head.weight" not in state and "gpt2.lm_head.weight" in expected:
        state["gpt2.lm_head.weight"] = state["gpt2.transformer.wte.weight"]  # tied
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise AblateError(f"{source}: weights do not match a matrix-CODI model "
                          f"(missing {missing[:4]}, unexpected {unexpected[:4]}); "
                          "pass a run_matrix_codi.py checkpoint")
    codi.load_state_dict(state, strict=True)
    return codi.to(device).eval()


def _bottleneck(state: dict[str, torch.Tensor], cfg: dict[str, Any], hidden: int,
                source: str) -> MatrixBottleneck:
    up = state.get("bottleneck.w_up.weight")
    if up is None:
        raise AblateError(f"{source}: use_matrix_bottleneck is set but bottleneck.w_up.weight "
                          "is missing; the checkpoint is incomplete")
    d = math.isqrt(up.shape[0])
    if d * d != up.shape[0]:
        raise AblateError(f"{source}: bottleneck.w_up has {up.shape[0]} outputs, not a square d²")
    readout = infer_readout(set(state), "bottleneck.", cfg.get("readout"), source)
    return MatrixBottleneck(hidden, d, readout=readout,
                            use_thinking_iter="bottleneck.thinker.I" in state,
                            force_rank_k=int(cfg.get("force_rank_during_training", 0) or 0))


def _codi_tokenizer(directory: str | Path, source: str, *, rows: int,
                    stated: Any) -> HuggingFaceTokenizer:
    """The GPT-2 tokenizer with <bot>, <eot>, <latent> added (as the research did), checked
    against the checkpoint's embedding rows."""
    loaded = load_tokenizer(directory)
    if not isinstance(loaded, HuggingFaceTokenizer):
        raise AblateError(f"{directory} holds a byte tokenizer; a research CODI checkpoint needs "
                          "the GPT-2 tokenizer: pass --tokenizer with a local GPT-2 directory")
    hf = loaded.hf_tokenizer
    base_size = len(hf)
    missing = [t for t in CODI_SPECIALS if t not in hf.get_vocab()]
    if missing:
        hf.add_special_tokens({"additional_special_tokens": list(CODI_SPECIALS)})
    if hf.pad_token is None:
        hf.pad_token = hf.eos_token
    size = len(hf)
    if stated is not None and (isinstance(stated, bool) or not isinstance(stated, int)):
        raise AblateError(f"{source}: tokenizer_len {stated!r} is not an integer; the file is "
                          "damaged: re-save it from the training run")
    if stated is not None and stated != rows:
        raise AblateError(f"{source}: tokenizer_len {stated} but the embedding has {rows} rows; "
                          "the file is inconsistent: re-save it from the training run")
    # tokenizer_len is the size of the tokenizer the run used; without it, a padded
    # embedding may be larger than the tokenizer, never smaller.
    if size != rows and (stated is not None or rows < size):
        plain = base_size - (len(CODI_SPECIALS) - len(missing))  # ids without the specials
        if rows == plain:
            raise AblateError(
                f"{source}: its embedding has {rows} rows, the ids of the tokenizer in "
                f"{directory} without <bot>, <eot>, <latent>: it was saved without the CODI "
                "special tokens, so it cannot run the latent loop; pass a matrix-CODI checkpoint")
        raise AblateError(
            f"{source}: the tokenizer does not match: {directory} has {size} ids with <bot>, "
            f"<eot>, <latent> but the checkpoint's embedding has {rows} rows"
            + (f" (tokenizer_len {stated})" if stated is not None else "")
            + "; pass the tokenizer it was trained with (--tokenizer DIR)")
    return HuggingFaceTokenizer(hf)
