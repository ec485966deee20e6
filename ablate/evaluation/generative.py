"""Generative evaluation: batched greedy decoding with the decode cache, then extraction.

Prompts (few-shot exemplars drawn from the train split with a generator seeded by the
eval seed and the item's doc_hash, so an item's prompt is the same in every condition and
batch) are left-padded with an attention mask and position ids that count from each row's
first real token. Decoding stops at the task's stop sequences, an EOS token, or
``max_new_tokens``; the prediction is the text before the first stop sequence, scored by
the task (GSM8K strict/flexible/numeric, OpenR1 boxed). Conditions acting only after the
backbone share one prompt pass (prefill) per batch and are then decoded together, each
prompt continued once per condition as rows of one batch over a ``SharedPrefixCache``
(the prompt's keys and values are read once per step for all its conditions).

A bigram embedding reads the previous token ids, which left padding would change, so its
batches hold prompts of one length only (no padding at all).

    >>> prompts = encode_prompts(tokenizer, items, task, few_shot=8, train_items=train,
    ...                          eval_seed=0, max_new_tokens=256, max_len=2048)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ablate.errors import AblateError
from ablate.evaluation.batching import (
    autocast,
    decode_memory_budget,
    left_pad,
    length_sorted_batches,
)
from ablate.evaluation.ranks import RankSums, position_eranks
from ablate.evaluation.records import item_columns
from ablate.evaluation.shared_backbone import BackboneEnds, split_conditions
from ablate.interventions import Condition
from ablate.model import DecodeCache, SharedPrefixCache
from ablate.rank import effective_rank
from ablate.tasks.base import Item, Task
from ablate.tasks.prompts import generative_example, teacher_forced_example, truncate_at_stop
from ablate.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodedPrompt:
    """A few-shot prompt as ids (left-truncated to leave room for the generation)."""

    item: Item
    prompt_ids: tuple[int, ...]
    prompt_hash: str
    target_hash: str
    target_bytes: int
    n_target_tokens: int
    prompt_truncated: int
    stop_sequences: tuple[str, ...]
    max_new_tokens: int

    def item_columns(self) -> dict[str, Any]:
        return item_columns(
            self.item, prompt_hash=self.prompt_hash, target_hash=self.target_hash,
            n_prompt_tokens=len(self.prompt_ids), n_target_tokens=self.n_target_tokens,
            prompt_truncated=self.prompt_truncated,
        )


def exemplar_generator(eval_seed: int, item: Item) -> np.random.Generator:
    """The few-shot draw for ``item``: depends on the eval seed and the item alone."""
    return np.random.default_rng([eval_seed, int(item.doc_hash, 16)])


def encode_prompts(
    tokenizer: Tokenizer,
    items: Sequence[Item],
    task: Task,
    *,
    few_shot: int,
    train_items: Sequence[Item] | None,
    eval_seed: int,
    max_new_tokens: int | None,
    max_len: int,
) -> list[EncodedPrompt]:
    """Few-shot prompts of every item as ids; each leaves ``max_new_tokens`` free."""
    if few_shot and not train_items:
        raise AblateError(
            f"few_shot={few_shot} needs train_items (the exemplar pool); load the train "
            "split and pass it, or set few_shot = 0"
        )
    prompts = []
    for item in items:
        example = generative_example(item, task.generation_format, pool=train_items or [],
                                     k=few_shot, rng=exemplar_generator(eval_seed, item),
                                     max_new_tokens=max_new_tokens)
        if example.max_new_tokens >= max_len:
            raise AblateError(
                f"max_new_tokens={example.max_new_tokens} leaves no room for a prompt in the "
                f"model's max_len={max_len}; lower max_new_tokens"
            )
        ids = tokenizer.encode(example.prompt)
        excess = max(0, len(ids) + example.max_new_tokens - max_len)
        gold = teacher_forced_example(item, task.text_format)
        prompts.append(EncodedPrompt(
            item=item, prompt_ids=tuple(ids[excess:]), prompt_hash=example.prompt_hash,
            target_hash=gold.target_hash, target_bytes=len(gold.target_bytes),
            n_target_tokens=len(tokenizer.encode(gold.target)), prompt_truncated=excess,
            stop_sequences=example.stop_sequences, max_new_tokens=example.max_new_tokens,
        ))
        if not prompts[-1].prompt_ids:
            raise AblateError(f"item {item.item_id}: the prompt encodes to no tokens")
    truncated = sum(p.prompt_truncated > 0 for p in prompts)
    if truncated:
        logger.warning("%d of %d prompts truncated from the left to fit max_len=%d",
                       truncated, len(prompts), max_len)
    return prompts


@dataclass
class _Prefill:
    """The state after the prompt pass: the prompt cache, each prompt's next position
    and the rank sums over prompt positions (shared by every condition of the pass)."""

    cache: DecodeCache
    positions: torch.Tensor  # (B,) position of each row's next token
    every: RankSums  # M(0..T) over all positions
    generating: RankSums  # M(0..T) over positions whose head input produced a token


@dataclass
class _Branch:
    """One condition's continuation of a prefill: its first logits and rank sums."""

    index: int  # of the condition in the evaluation's list
    condition: Condition
    first_logits: torch.Tensor  # (B, V)
    every: RankSums
    generating: RankSums
    head: RankSums  # head input over all positions


def _copy_sums(sums: RankSums) -> RankSums:
    copy = RankSums(*sums.total.shape)
    copy.total, copy.count = sums.total.clone(), sums.count.clone()
    return copy


class _Decoder:
    """Greedy decoding of one batch of prompts for one model and precision."""

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, n_iterations: int,
                 device: torch.device, precision: str, eval_seed: int) -> None:
        self.model, self.tokenizer, self.T = model, tokenizer, n_iterations
        self.device, self.precision, self.eval_seed = device, precision, eval_seed

    def _precision(self) -> AbstractContextManager:
        return autocast(self.device, self.precision)

    def prompt_pass(
        self, batch: Sequence[EncodedPrompt]
    ) -> tuple[_Prefill, list[torch.Tensor], Any]:
        """Run the prompts (under whatever hooks are attached). Returns the prefill, the
        states, and the real positions (rows, cols, last)."""
        ids, mask, positions = left_pad([p.prompt_ids for p in batch], self.device)
        # No room reserved: generated tokens go to the shared-prefix cache's own buffers,
        # and a prompt cache that holds exactly the prompt is read as it is (contiguous).
        cache = DecodeCache()
        with self._precision():
            states = self.model(ids, self.T, attention_mask=mask, position_ids=positions,
                                cache=cache, return_states=True, head=False).states
        rows, cols = mask.nonzero(as_tuple=True)  # row-major: each row's last is its prompt end
        B, n_states = len(batch), self.T + 1
        eranks = position_eranks(states[:n_states], rows, cols)
        every, generating = RankSums(B, n_states), RankSums(B, n_states)
        every.add(eranks, rows)
        last = cols == ids.shape[1] - 1
        generating.add(eranks[:, last.cpu()], rows[last])
        cache.prefix_parts()  # the prompt's keys and values in the layout decoding reads
        return _Prefill(cache, mask.sum(1), every, generating), states, (rows, cols, last)

    def branch(self, prefill: _Prefill, index: int, condition: Condition, Y: torch.Tensor,
               rows: torch.Tensor, last: torch.Tensor,
               erank: torch.Tensor | None = None) -> _Branch:
        """A condition's first logits and head ranks from its head inputs Y (N, d, d) at
        the real positions (``erank`` (N,): their effective ranks, when known)."""
        head = RankSums(len(prefill.positions), 1)
        head.add((erank if erank is not None else effective_rank(Y).cpu())[None], rows)
        with self._precision():
            logits = self.model.head(Y[last]).float()  # (B, V), rows in order
        return _Branch(index, condition, logits, _copy_sums(prefill.every),
                       _copy_sums(prefill.generating), head)

    def decode(self, batch: Sequence[EncodedPrompt], prefill: _Prefill,
               branches: Sequence[_Branch], apply: bool) -> list[list[list[int]]]:
        """Greedy tokens (EOS excluded) of every prompt under every branch, [branch][prompt],
        decoded as prompts x branches rows of one batch that share the prompt cache. With
        ``apply`` each branch's condition is applied to its rows' head inputs (conditions
        after the backbone); otherwise whatever hooks are attached act (one branch)."""
        assert apply or len(branches) == 1
        B, C = len(batch), len(branches)
        eos = self.tokenizer.eos_id
        cap = max(p.max_new_tokens for p in batch)
        cache = SharedPrefixCache(prefill.cache, n_branches=C, capacity=cap)
        generated: list[list[list[int]]] = [[[] for _ in batch] for _ in branches]
        active = [(b, c) for b in range(B) for c in range(C)]  # the cache's row order
        logits = torch.stack([branch.first_logits for branch in branches], 1).flatten(0, 1)
        positions = prefill.positions.repeat_interleave(C)
        windows = [max((len(s.encode()) for s in p.stop_sequences), default=0) + 1
                   for p in batch]
        while True:
            tokens = logits.argmax(-1)  # (n_active,)
            keep = []
            for j, (b, c) in enumerate(active):
                token = int(tokens[j])
                if token == eos:
                    continue
                out = generated[c][b]
                out.append(token)
                prompt = batch[b]
                # A stop sequence first present now ends in this token, so the last
                # (longest stop in bytes + 1) tokens hold it: no need to decode it all.
                tail = self.tokenizer.decode(out[-windows[b]:])
                stopped = any(stop in tail for stop in prompt.stop_sequences)
                if not stopped and len(out) < prompt.max_new_tokens:
                    keep.append(j)
            if not keep:
                return generated
            if len(keep) < len(active):
                cache.keep(keep)
                index = torch.tensor(keep, device=self.device)
                tokens, positions = tokens[index], positions[index]
                active = [active[j] for j in keep]
            with self._precision():
                states = self.model(tokens[:, None], self.T, position_ids=positions[:, None],
                                    cache=cache, return_states=True, head=False).states
            positions = positions + 1
            # (T+1, n_active): one call for all states (the same values as one per state)
            eranks = effective_rank(torch.stack([S[:, 0] for S in states[: self.T + 1]])).cpu()
            logits = self._next_logits(states, active, branches, eranks, apply)

    def _next_logits(self, states: list[torch.Tensor], active: list[tuple[int, int]],
                     branches: Sequence[_Branch], eranks: torch.Tensor,
                     apply: bool) -> torch.Tensor:
        """Logits (n_active, V) of the live rows, each under its branch's condition; adds
        the new position's ranks to the branches' sums."""
        Y = states[-1][:, 0]  # (n_active, d, d)
        logits = None
        for c, branch in enumerate(branches):
            index = [j for j, (_, cc) in enumerate(active) if cc == c]
            if not index:
                continue
            prompts = torch.tensor([active[j][0] for j in index])
            branch.every.add(eranks[:, index], prompts)
            branch.generating.add(eranks[:, index], prompts)
            rows = torch.tensor(index, device=Y.device)
            Yc = Y[rows]
            if apply:
                ends = BackboneEnds(pre_norm=states[self.T][rows, 0], head_input=Yc)
                with self._precision():
                    Yc = ends.condition_head_input(branch.condition, self.model.final_norm,
                                                   self.eval_seed)
                erank = ends.head_input_erank(branch.condition, Yc, self.eval_seed)
            else:
                erank = effective_rank(Yc).cpu()
            branch.head.add(erank[None], prompts)
            with self._precision():
                part = self.model.head(Yc).float()
            if logits is None:
                logits = part.new_empty(len(active), part.shape[-1])
            logits[rows] = part
        assert logits is not None
        return logits


def run_generative(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    prompts: Sequence[EncodedPrompt],
    conditions: Sequence[Condition],
    task: Task,
    *,
    n_iterations: int,
    eval_seed: int,
    batch_size: int = 16,
    device: torch.device | None = None,
    precision: str = "float32",
    shared_backbone: bool = True,
    progress: Callable[[int], None] | None = None,
    decode_memory: int | None = None,
) -> list[list[dict[str, Any]]]:
    """Item + metric columns, ``[condition][item]``, in the given orders.

    Conditions acting after the backbone share one prompt pass per batch and are decoded
    together, as rows of one batch, in groups whose decode caches fit ``decode_memory``
    bytes (default: ``batching.decode_memory_budget``).
    """
    device = device if device is not None else torch.device("cpu")
    results: list[list[dict[str, Any]]] = [[{} for _ in prompts] for _ in conditions]
    shared, separate = split_conditions(conditions, shared_backbone)
    decoder = _Decoder(model, tokenizer, n_iterations, device, precision, eval_seed)
    same_length = getattr(model.config, "embedding", "") == "bigram"
    lengths = [len(p.prompt_ids) for p in prompts]
    batches = length_sorted_batches(lengths, batch_size)
    if same_length:
        batches = [[i for i in b if lengths[i] == n] for b in batches
                   for n in sorted({lengths[i] for i in b}, reverse=True)]
    budget = decode_memory if decode_memory is not None else decode_memory_budget(device)

    def store(batch: list[int], branches: Sequence[_Branch],
              generated: list[list[list[int]]]) -> None:
        for branch, outputs in zip(branches, generated, strict=True):
            ci = branch.index
            every, generating, head = (s.means() for s in (branch.every, branch.generating,
                                                            branch.head))
            for b, index in enumerate(batch):
                prompt = prompts[index]
                text = truncate_at_stop(tokenizer.decode(outputs[b]), prompt.stop_sequences)
                score = task.score(text, prompt.item)
                results[ci][index] = {
                    **prompt.item_columns(), "solution_bytes": prompt.target_bytes,
                    "prediction": text, "correct_strict": score.correct_strict,
                    "correct_flexible": score.correct_flexible,
                    "correct_numeric": score.correct_numeric, "invalid": score.invalid,
                    "correct": float(score.correct), "erank_per_iter": every[b],
                    "erank_answer_per_iter": generating[b], "erank_head_input": head[b][0],
                }

    for batch in batches:
        encoded = [prompts[i] for i in batch]
        reserve = max(p.max_new_tokens for p in encoded)
        row_bytes = reserve * _position_bytes(model, n_iterations)
        per_decode = max(1, budget // max(1, len(batch) * row_bytes))
        if shared:
            prefill, states, (rows, cols, last) = decoder.prompt_pass(encoded)
            ends = BackboneEnds(pre_norm=states[n_iterations][rows, cols],
                                head_input=states[-1][rows, cols])
            del states
            branches = []
            for ci in shared:
                with autocast(device, precision):
                    Y = ends.condition_head_input(conditions[ci], model.final_norm, eval_seed)
                erank = ends.head_input_erank(conditions[ci], Y, eval_seed)
                branches.append(decoder.branch(prefill, ci, conditions[ci], Y, rows, last,
                                               erank))
            del ends
            for start in range(0, len(branches), per_decode):
                group = branches[start:start + per_decode]
                store(batch, group, decoder.decode(encoded, prefill, group, apply=True))
        for ci in separate:
            with model.hooks(conditions[ci].hooks(eval_seed)):
                prefill, states, (rows, cols, last) = decoder.prompt_pass(encoded)
                branch = decoder.branch(prefill, ci, conditions[ci], states[-1][rows, cols],
                                        rows, last)
                del states
                store(batch, [branch], decoder.decode(encoded, prefill, [branch], apply=False))
        if progress is not None:
            progress(len(batch) * len(conditions))
    return results


def _position_bytes(model: torch.nn.Module, n_iterations: int) -> int:
    """Bytes of keys and values one position adds to a decode cache (float32)."""
    config = model.config
    return 2 * config.n_layers * max(1, n_iterations) * config.mat_dim ** 2 * 4
