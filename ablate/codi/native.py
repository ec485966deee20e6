"""Native matrix-CODI: continuous d×d "thoughts" fed back into a Matrix Thinker.

After ``question + <bot>``, the state at the last position after T iterations and the
final norm (the head input, the analogue of GPT-2's post-``ln_f`` state that the research
feeds back, spec §9) goes through a projection Π and, plus the positional term
0.1·p_u p_vᵀ of its position, becomes the starting matrix M(0) of the next position.
That repeats ``n_latents`` times (0 is the no-thought baseline); then ``<eot>`` and the
answer tail follow. Attention is causal in every iteration, so the loop runs on a
``DecodeCache`` (per-(iteration, layer) keys/values): each latent costs one position, and
the result equals re-running the growing sequence (``use_cache=False``; tested).

Π ("projection"): "network" = one multiplicative thinking layer (spec §2.5, dropout 0)
then a ``MatrixRMSNorm``, the native counterpart of the research bottleneck; "norm" = the
norm alone (the research vanilla LayerNorm feedback); "identity". The latent matrix Z that
rank studies read is Π's output before the positional term is added; it passes the hook
point ``latent.{j}`` (``ablate.sites``), so a hook's output is the thought fed back.

    >>> codi = NativeCodi(thinker, tokenizer, CodiSettings(n_latents=6))      # doctest: +SKIP
    >>> run = codi.think(question, n_latents=6)                              # doctest: +SKIP
    >>> [z.shape for z in run.latents]   # six (B, d, d) matrices            # doctest: +SKIP
    >>> with codi.hooks({"latent.0": lambda Z, name: Z * 0}):              # doctest: +SKIP
    ...     run = codi.think(question, n_latents=6)       # the first thought zeroed
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import nn

from ablate.codi.evaluation import MAX_NEW_TOKENS, Solution
from ablate.codi.losses import distillation_loss, masked_cross_entropy, token_logprobs
from ablate.codi.sequences import (
    BOT,
    EOT,
    PAD,
    CodiBatch,
    CodiExample,
    CodiLayout,
    Padded,
    collate,
    prompt_tail,
    target_mask,
)
from ablate.config import ConfigBase, arg, from_table
from ablate.errors import AblateError
from ablate.model import DecodeCache, MatrixThinker, ThinkerOutput
from ablate.model.hooks import HookedMixin, HookFn
from ablate.model.layers import MatrixRMSNorm, MultiplicativeThinkingLayer
from ablate.tokenizer import Tokenizer

PROJECTIONS = ("network", "norm", "identity")
SETTINGS_VERSION = 1
# Embeddings whose M(0) reads earlier token ids; latent positions have none.
HISTORY_EMBEDDINGS = ("bigram",)


@dataclass(frozen=True)
class CodiSettings(ConfigBase):
    """What a native CODI checkpoint needs beyond the Matrix Thinker config.

    Round-trips through JSON (``to_json``/``from_json``); unknown keys are errors.
    """

    WHAT: ClassVar[str] = "CODI settings"
    VERSION: ClassVar[int] = SETTINGS_VERSION

    projection: str = arg("network", help="Latent projection.", choices=PROJECTIONS)
    n_latents: int = arg(6, help="Latent thoughts after <bot>.", min_value=0)
    n_iterations: int = arg(2, help="Thinker iterations T.", min_value=0)
    question_suffix: str = arg("\n", help="Text after the question.")
    cue: str = arg(" The answer is:", help="Text before the answer.")
    answer_suffix: str = arg("\n", help="Text after the answer.")
    version: int = arg(SETTINGS_VERSION, help="Settings format version.")

    @property
    def layout(self) -> CodiLayout:
        return CodiLayout(self.question_suffix, self.cue, self.answer_suffix)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict, source: str) -> CodiSettings:
        return from_table(cls, data, source)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2)


class LatentProjection(nn.Module):
    """Π: head input (B, d, d) -> next latent's starting matrix (before the positional term)."""

    def __init__(self, d: int, kind: str) -> None:
        super().__init__()
        if kind not in PROJECTIONS:
            raise AblateError(f"projection '{kind}' is not one of {PROJECTIONS}")
        self.kind = kind
        if kind == "network":
            self.think = MultiplicativeThinkingLayer(d, dropout=0.0)
        if kind != "identity":
            self.norm = MatrixRMSNorm(d)

    def forward(self, H: torch.Tensor) -> torch.Tensor:
        if self.kind == "network":
            H = self.think(H)
        return H if self.kind == "identity" else self.norm(H)


class _Context:
    """The sequence so far: a DecodeCache, or (``use_cache=False``) every chunk's starting
    matrices, re-run from scratch on each extension. Outputs cover the new positions."""

    def __init__(self, thinker: MatrixThinker, n_iterations: int, use_cache: bool) -> None:
        self.thinker = thinker
        self.T = n_iterations
        self.cache: DecodeCache | None = DecodeCache() if use_cache else None
        self.embeds: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []

    def extend(self, embeds: torch.Tensor, mask: torch.Tensor, *, head: bool) -> ThinkerOutput:
        L = embeds.shape[1]
        if self.cache is not None:
            return self.thinker(embeds=embeds, n_iterations=self.T, attention_mask=mask,
                                cache=self.cache, head=head)
        self.embeds.append(embeds)
        self.masks.append(mask)
        out = self.thinker(embeds=torch.cat(self.embeds, 1), n_iterations=self.T,
                           attention_mask=torch.cat(self.masks, 1), head=head)
        if head:
            return ThinkerOutput(logits=out.logits[:, -L:])
        return ThinkerOutput(logits=out.logits, states=[s[:, -L:] for s in out.states or []])

    def fork(self) -> _Context:
        """An independent continuation point (the cache copies on write)."""
        twin = _Context(self.thinker, self.T, self.cache is not None)
        if self.cache is not None:
            twin.cache = self.cache.fork()
        twin.embeds, twin.masks = list(self.embeds), list(self.masks)
        return twin


@dataclass
class QuestionRead:
    """A question read up to (not including) its last column, which ``last`` holds
    (B, 1) at position ``last_position`` (B,); ``n_tokens`` (B,) counts real tokens."""

    context: _Context
    last: Padded
    last_position: torch.Tensor
    n_tokens: torch.Tensor


@dataclass
class LatentRun:
    """State after the latent loop: the context, the latent matrices Z_j (B, d, d), the
    last latent's starting matrix (fed with the next chunk) and each row's next position."""

    context: _Context
    latents: list[torch.Tensor]
    pending: torch.Tensor | None  # (B, 1, d, d)
    next_position: torch.Tensor  # (B,)
    n_question_tokens: torch.Tensor  # (B,) real question tokens

    def fork(self) -> LatentRun:
        return LatentRun(self.context.fork(), list(self.latents), self.pending,
                         self.next_position.clone(), self.n_question_tokens)


def check_specials(specials: list[str] | tuple[str, ...], source: str) -> None:
    """One-line error unless the CODI special tokens are in the vocabulary."""
    missing = [name for name in (PAD, BOT, EOT) if name not in specials]
    if missing:
        raise AblateError(
            f"{source} has no CODI special token(s) {', '.join(missing)} (its specials: "
            f"{list(specials)}); use a checkpoint trained with `ablate codi train`, whose "
            "byte vocabulary includes <pad>, <bot>, <eot>"
        )


class NativeCodi(HookedMixin, nn.Module):
    """A Matrix Thinker plus the latent projection Π; parameters ``thinker.*``, ``projection.*``.
    Hook points ``latent.{j}`` (``hooks()``) see each latent thought Z_j (B, d, d)."""

    def __init__(self, thinker: MatrixThinker, tokenizer: Tokenizer,
                 settings: CodiSettings) -> None:
        super().__init__()
        check_specials(thinker.config.specials, "the model config")
        if thinker.config.embedding in HISTORY_EMBEDDINGS:
            raise AblateError(f"embedding '{thinker.config.embedding}' reads earlier token ids, "
                              "which latent positions do not have; use outer, rank_r or pairwise")
        self.thinker = thinker
        self.projection = LatentProjection(thinker.config.mat_dim, settings.projection)
        self.tokenizer = tokenizer
        self.settings = settings
        self.bot_id = tokenizer.special_id(BOT)
        self.eot_id = tokenizer.special_id(EOT)
        self.pad_id = tokenizer.special_id(PAD)
        self._init_hooks()

    @property
    def mat_dim(self) -> int:
        return self.thinker.config.mat_dim

    @property
    def layout(self) -> CodiLayout:
        return self.settings.layout

    def distill_sites(self, n_iterations: int) -> list[str]:
        """Every block output of every iteration (spec §9 distils every layer)."""
        return [f"iter.{t}.layer.{layer}.hook_out" for t in range(1, n_iterations + 1)
                for layer in range(self.thinker.config.n_layers)]

    def _check_positions(self, top: int) -> None:
        if top >= self.thinker.config.max_len:
            raise AblateError(f"CODI sequence reaches position {top} but the model's max_len is "
                              f"{self.thinker.config.max_len}: shorten questions "
                              "(max_question_tokens) or use fewer latents")

    def positional(self, positions: torch.Tensor) -> torch.Tensor:
        """0.1 · p_u p_vᵀ for positions (B,) -> (B, d, d), as in M(0) (spec §2.7)."""
        self._check_positions(int(positions.max()))
        pu, pv = self.thinker.pos_u(positions), self.thinker.pos_v(positions)  # (B, d)
        return pu.unsqueeze(-1) * pv.unsqueeze(-2) * 0.1

    def read_question(self, question: Padded, *, use_cache: bool = True,
                      n_iterations: int | None = None) -> QuestionRead:
        """Run every question column but the last (left-padded ``question``), which teacher
        and student both continue from (``QuestionRead.context.fork()``)."""
        T = self.settings.n_iterations if n_iterations is None else n_iterations
        # Positions count real tokens only, so left padding never shifts a question.
        positions = (question.mask.long().cumsum(1) - 1).clamp_min(0)  # (B, Lq)
        context = _Context(self.thinker, T, use_cache)
        if question.ids.shape[1] > 1:
            head_ids, head_mask = question.ids[:, :-1], question.mask[:, :-1]
            context.extend(self.thinker.embed(head_ids, positions[:, :-1]), head_mask, head=False)
        last = Padded(question.ids[:, -1:], question.mask[:, -1:])
        return QuestionRead(context, last, positions[:, -1], question.mask.sum(1))

    def _chunk(self, context: _Context, tokens: Padded, start: torch.Tensor, *,
               lead: torch.Tensor | None = None, head: bool = True,
               collect_at: torch.Tensor | None = None,
               ) -> tuple[ThinkerOutput, dict[str, torch.Tensor]]:
        """Append ``lead`` (B, 1, d, d) (a pending latent) and right-padded ``tokens`` whose
        first token sits at position ``start`` (B,). With ``collect_at`` (B,), also return
        every block output at that token index {hook name: (B, d, d)}."""
        B, L = tokens.ids.shape
        offsets = torch.arange(L, device=tokens.ids.device)[None]
        positions = torch.where(tokens.mask, start[:, None] + offsets, 0)  # (B, L)
        self._check_positions(int(positions.max()) if L else 0)
        embeds = self.thinker.embed(tokens.ids, positions)  # (B, L, d, d)
        mask = tokens.mask
        n_lead = 0
        if lead is not None:
            embeds = torch.cat([lead, embeds], 1)
            mask = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=mask.device), mask], 1)
            n_lead = 1
        collected: dict[str, torch.Tensor] = {}
        hooks = {}
        if collect_at is not None:
            rows = torch.arange(B, device=embeds.device)
            width = embeds.shape[1]

            def grab(x: torch.Tensor, name: str) -> None:
                # Without a cache x spans the whole sequence; the chunk is its tail.
                collected[name] = x[rows, x.shape[1] - width + n_lead + collect_at]

            hooks = {name: grab for name in self.distill_sites(context.T)}
        with self.thinker.hooks(hooks):
            out = context.extend(embeds, mask, head=head)
        if head:
            out = ThinkerOutput(logits=out.logits[:, n_lead:])
        else:
            out = ThinkerOutput(logits=out.logits, states=[s[:, n_lead:] for s in out.states or []])
        return out, collected

    def think(self, question: Padded, n_latents: int, *, use_cache: bool = True,
              n_iterations: int | None = None, read: QuestionRead | None = None) -> LatentRun:
        """Run ``question`` (left-padded) + ``<bot>`` and ``n_latents`` latent steps
        (continuing ``read`` when given; it is consumed). Each thought passes the hook
        point ``latent.{j}`` before it is fed back."""
        if n_latents < 0:
            raise AblateError(f"n_latents={n_latents} must be >= 0")
        if read is None:
            read = self.read_question(question, use_cache=use_cache, n_iterations=n_iterations)
        B = read.last.ids.shape[0]
        bot = torch.full((B, 1), self.bot_id, dtype=torch.long, device=read.last.ids.device)
        tokens = Padded(torch.cat([read.last.ids, bot], 1),
                        torch.cat([read.last.mask, torch.ones_like(bot, dtype=torch.bool)], 1))
        out, _ = self._chunk(read.context, tokens, read.last_position, head=False)
        H = out.states[-1][:, -1]  # (B, d, d): head input at <bot>
        next_position = read.last_position + 2  # (B,)
        latents: list[torch.Tensor] = []
        pending = None
        ones = torch.ones(B, 1, dtype=torch.bool, device=bot.device)
        for j in range(n_latents):
            Z = self.projection(H)  # (B, d, d)
            if self._hook_table:
                Z = self._hook(f"latent.{j}", Z)
            latents.append(Z)
            E = (Z + self.positional(next_position))[:, None]  # (B, 1, d, d)
            next_position = next_position + 1
            if j < n_latents - 1:
                H = read.context.extend(E, ones, head=False).states[-1][:, -1]
            else:
                pending = E  # fed together with the tail, as the research does
        return LatentRun(read.context, latents, pending, next_position, read.n_tokens)

    def extend(self, run: LatentRun, tokens: Padded, *, collect_at: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Append right-padded ``tokens`` (after the pending latent) to ``run``.

        Returns the logits (B, L, V) of the token positions and, when ``collect_at`` (B,)
        gives a token index per row, every block output at that index {hook name: (B, d, d)}.
        """
        out, collected = self._chunk(run.context, tokens, run.next_position, lead=run.pending,
                                     collect_at=collect_at)
        run.pending = None
        run.next_position = run.next_position + tokens.mask.sum(1)
        return out.logits, collected

    def teacher_from(self, read: QuestionRead, rest: Padded, cue: torch.Tensor,
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Teacher continuation of a question read (``rest`` starts with the question's
        last token): logits (B, L, V) and the block outputs at token index ``cue``."""
        out, collected = self._chunk(read.context.fork(), rest, read.last_position,
                                     collect_at=cue)
        return out.logits, collected

    def teacher(self, teacher: Padded, cue: torch.Tensor, n_iterations: int | None = None,
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A stand-alone teacher pass over full right-padded sequences (positions from 0):
        logits (B, L, V) and block outputs at ``cue``."""
        T = self.settings.n_iterations if n_iterations is None else n_iterations
        rows = torch.arange(teacher.ids.shape[0], device=teacher.ids.device)
        collected: dict[str, torch.Tensor] = {}

        def grab(x: torch.Tensor, name: str) -> None:
            collected[name] = x[rows, cue]

        with self.thinker.hooks({name: grab for name in self.distill_sites(T)}):
            out = self.thinker(teacher.ids, T, attention_mask=teacher.mask)
        return out.logits, collected

    def losses(self, batch: CodiBatch, n_latents: int, *, alpha: float = 1.0, beta: float = 1.0,
               gamma: float = 1.0) -> dict[str, torch.Tensor]:
        """CODI losses of one batch: {"teacher", "student", "distill", "total"} (scalars).

        With ``alpha = gamma = 0`` the teacher pass is skipped (the curriculum schedule,
        whose batch tails carry the remaining chain of thought).
        """
        read = self.read_question(batch.question)
        distill = alpha != 0 or gamma != 0
        if distill:  # fork before the student extends the shared question context
            teacher_logits, teacher_states = self.teacher_from(read, batch.teacher,
                                                               batch.teacher_cue)
        run = self.think(batch.question, n_latents, read=read)
        student_logits, student_states = self.extend(
            run, batch.tail, collect_at=batch.tail_cue if distill else None)
        student_ce = masked_cross_entropy(student_logits, batch.tail.ids,
                                          target_mask(batch.tail.mask, batch.tail_start))
        zero = student_ce.new_zeros(())
        out = {"student": student_ce, "teacher": zero, "distill": zero}
        if distill:
            targets = target_mask(batch.teacher.mask, batch.teacher_start)
            out["teacher"] = masked_cross_entropy(teacher_logits, batch.teacher.ids, targets)
            names = sorted(teacher_states)
            out["distill"] = distillation_loss([student_states[n] for n in names],
                                               [teacher_states[n] for n in names])
        out["total"] = alpha * out["teacher"] + beta * out["student"] + gamma * out["distill"]
        return out

    @torch.no_grad()
    def generate(self, run: LatentRun, prompt: list[int], max_new_tokens: int,
                 stop_ids: set[int]) -> list[list[int]]:
        """Greedy continuation of ``run`` + ``prompt`` (the same ids for every row); each
        row stops after its first stop id (kept in the output) or ``max_new_tokens``."""
        B = run.next_position.shape[0]
        device = run.next_position.device
        prompt_ids = torch.tensor([prompt] * B, dtype=torch.long, device=device)
        every = torch.ones_like(prompt_ids, dtype=torch.bool)
        logits, _ = self.extend(run, Padded(prompt_ids, every))
        outputs: list[list[int]] = [[] for _ in range(B)]
        done = [False] * B
        for step in range(max_new_tokens):
            nxt = logits[:, -1].argmax(-1)  # (B,)
            for row, token in enumerate(nxt.tolist()):
                if not done[row]:
                    outputs[row].append(token)
                    done[row] = token in stop_ids
            if all(done) or step == max_new_tokens - 1:
                break
            ids = nxt[:, None]
            logits, _ = self.extend(run, Padded(ids, torch.ones_like(ids, dtype=torch.bool)))
        return outputs

    def stop_ids(self) -> set[int]:
        """Tokens that end an answer: the suffix's first token and every special token."""
        stops = {self.pad_id, self.bot_id, self.eot_id}
        if self.settings.answer_suffix:
            stops.add(self.tokenizer.encode(self.settings.answer_suffix)[0])
        if self.tokenizer.eos_id is not None:
            stops.add(self.tokenizer.eos_id)
        return stops

    @torch.no_grad()
    def solve(self, examples: Sequence[CodiExample], n_latents: int, *,
              hooks: Sequence[Mapping[str, HookFn]] = ({},),
              max_new_tokens: int = MAX_NEW_TOKENS, batch_size: int = 32,
              ) -> list[list[Solution]]:
        """Per hook table (a condition's hooks at ``latent.*``), per example: latents,
        teacher-forced gold-answer score, greedy answer.

        The question is read once per batch and shared by every hook table (latent hooks
        act after the question, so its keys and values are the same for all).
        """
        device = next(self.parameters()).device
        prompt = prompt_tail(self.tokenizer, self.layout)
        stops = self.stop_ids()
        solutions: list[list[Solution]] = [[] for _ in hooks]
        for start in range(0, len(examples), batch_size):
            chunk = list(examples[start:start + batch_size])
            batch = collate(chunk, self.pad_id).to(device)
            read = self.read_question(batch.question)
            for table, bucket in zip(hooks, solutions, strict=True):
                shared = QuestionRead(read.context.fork(), read.last, read.last_position,
                                      read.n_tokens)
                with self.hooks(table):
                    run = self.think(batch.question, n_latents, read=shared)
                bucket += self._score(run, batch, prompt, stops, max_new_tokens)
        return solutions

    def _score(self, run: LatentRun, batch: CodiBatch, prompt: list[int], stops: set[int],
               max_new_tokens: int) -> list[Solution]:
        logits, _ = self.extend(run.fork(), batch.tail)  # (B, Lt, V)
        answer = target_mask(batch.tail.mask, batch.tail_cue)[:, :-1]  # (B, Lt-1)
        logp = token_logprobs(logits, batch.tail.ids)
        hits = (logits[:, :-1].argmax(-1) == batch.tail.ids[:, 1:]) | ~answer
        B = batch.tail.ids.shape[0]
        latents = (torch.stack(run.latents, 1).float().cpu() if run.latents
                   else torch.zeros(B, 0, self.mat_dim, self.mat_dim))
        generated = self.generate(run, prompt, max_new_tokens, stops)
        out = []
        for row, ids in enumerate(generated):
            if ids and ids[-1] in stops:  # only the last token can be a stop
                ids = ids[:-1]
            out.append(Solution(
                generation=self.tokenizer.decode(ids),
                latents=latents[row],
                answer_loglik=float(logp[row][answer[row]].sum()),
                tf_exact_match=bool(hits[row].all()),
                n_question_tokens=int(run.n_question_tokens[row]),
                n_answer_tokens=int(answer[row].sum()),
            ))
        return out
