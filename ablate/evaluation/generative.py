"""Generative evaluation: batched greedy decoding with the decode cache, then extraction.

Prompts (few-shot exemplars drawn from the train split with a generator seeded by the
eval seed and the item's doc_hash, so an item's prompt is the same in every condition and
batch) are left-padded with an attention mask and position ids that count from each row's
first real token. Decoding stops at the task's stop sequences, an EOS token, or
``max_new_tokens``; the prediction is the text before the first stop sequence, scored by
the task (GSM8K strict/flexible/numeric, OpenR1 boxed). Conditions acting only after the
backbone share one prompt pass (prefill) per batch and fork its cache.

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
from ablate.evaluation.batching import autocast, left_pad, length_sorted_batches
from ablate.evaluation.ranks import RankSums, position_eranks
from ablate.evaluation.records import item_columns
from ablate.evaluation.shared_backbone import BackboneEnds, split_conditions
from ablate.interventions import Condition
from ablate.model import DecodeCache
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
        example = generative_example(item, task.text_format, pool=train_items or [], k=few_shot,
                                     rng=exemplar_generator(eval_seed, item),
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
    """The state after the prompt pass: cache, next positions, per-row rank sums."""

    cache: DecodeCache
    first_logits: torch.Tensor  # (B, V)
    positions: torch.Tensor  # (B,) position of each row's next token
    every: RankSums  # M(0..T) over all positions
    generating: RankSums  # M(0..T) over positions whose head input produced a token
    head: RankSums  # head input over all positions


def _copy_sums(sums: RankSums) -> RankSums:
    copy = RankSums(*sums.total.shape)
    copy.total, copy.count = sums.total.clone(), sums.count.clone()
    return copy


class _Decoder:
    """Greedy decoding of one batch of prompts for one model and precision."""

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer, n_iterations: int,
                 device: torch.device, precision: str) -> None:
        self.model, self.tokenizer, self.T = model, tokenizer, n_iterations
        self.device, self.precision = device, precision

    def _precision(self) -> AbstractContextManager:
        return autocast(self.device, self.precision)

    def prompt_pass(
        self, batch: Sequence[EncodedPrompt]
    ) -> tuple[_Prefill, list[torch.Tensor], Any]:
        """Run the prompts (under whatever hooks are attached). Returns the prefill with
        unablated head ranks and first logits, the states, and the real positions."""
        ids, mask, positions = left_pad([p.prompt_ids for p in batch], self.device)
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
        prefill = _Prefill(cache, torch.empty(0), mask.sum(1), every, generating, RankSums(B, 1))
        return prefill, states, (rows, cols, last)

    def finish_prefill(self, prefill: _Prefill, Y: torch.Tensor, rows: torch.Tensor,
                       last: torch.Tensor) -> _Prefill:
        """Head ranks and first logits from the head inputs Y (N, d, d) at the real positions."""
        head = _copy_sums(prefill.head)
        head.add(effective_rank(Y)[None].cpu(), rows)
        with self._precision():
            logits = self.model.head(Y[last]).float()  # (B, V), rows in order
        return _Prefill(prefill.cache.fork(), logits, prefill.positions.clone(),
                        _copy_sums(prefill.every), _copy_sums(prefill.generating), head)

    def decode(self, batch: Sequence[EncodedPrompt], prefill: _Prefill) -> list[list[int]]:
        """Greedy tokens per row (EOS excluded), under whatever hooks are attached."""
        eos = self.tokenizer.eos_id
        generated: list[list[int]] = [[] for _ in batch]
        active = list(range(len(batch)))
        logits, positions, cache = prefill.first_logits, prefill.positions, prefill.cache
        while True:
            tokens = logits.argmax(-1)  # (n_active,)
            keep = []
            for j, row in enumerate(active):
                token = int(tokens[j])
                if token == eos:
                    continue
                generated[row].append(token)
                prompt = batch[row]
                # A stop sequence first present now ends in this token, so the last
                # (longest stop in bytes + 1) tokens hold it: no need to decode it all.
                window = max((len(s.encode()) for s in prompt.stop_sequences), default=0) + 1
                tail = self.tokenizer.decode(generated[row][-window:])
                stopped = any(stop in tail for stop in prompt.stop_sequences)
                if not stopped and len(generated[row]) < prompt.max_new_tokens:
                    keep.append(j)
            if not keep:
                return generated
            if len(keep) < len(active):
                index = torch.tensor(keep, device=self.device)
                cache.reorder(index)
                tokens, positions = tokens[index], positions[index]
                active = [active[j] for j in keep]
            with self._precision():
                states = self.model(tokens[:, None], self.T, position_ids=positions[:, None],
                                    cache=cache, return_states=True, head=False).states
            positions = positions + 1
            rows = torch.tensor(active)
            eranks = torch.stack([effective_rank(S[:, 0]).cpu() for S in states[: self.T + 1]])
            prefill.every.add(eranks, rows)
            prefill.generating.add(eranks, rows)
            Y = states[-1][:, 0]  # (n_active, d, d)
            prefill.head.add(effective_rank(Y)[None].cpu(), rows)
            with self._precision():
                logits = self.model.head(Y).float()


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
) -> list[list[dict[str, Any]]]:
    """Item + metric columns, ``[condition][item]``, in the given orders."""
    device = device if device is not None else torch.device("cpu")
    results: list[list[dict[str, Any]]] = [[{} for _ in prompts] for _ in conditions]
    shared, separate = split_conditions(conditions, shared_backbone)
    decoder = _Decoder(model, tokenizer, n_iterations, device, precision)
    same_length = getattr(model.config, "embedding", "") == "bigram"
    lengths = [len(p.prompt_ids) for p in prompts]
    batches = length_sorted_batches(lengths, batch_size)
    if same_length:
        batches = [[i for i in b if lengths[i] == n] for b in batches
                   for n in sorted({lengths[i] for i in b}, reverse=True)]

    def finish(ci: int, batch: list[int], prefill: _Prefill, hooks: Any) -> None:
        with hooks:
            generated = decoder.decode([prompts[i] for i in batch], prefill)
        every, generating, head = (s.means() for s in (prefill.every, prefill.generating,
                                                        prefill.head))
        for b, index in enumerate(batch):
            prompt = prompts[index]
            text = truncate_at_stop(tokenizer.decode(generated[b]), prompt.stop_sequences)
            score = task.score(text, prompt.item)
            results[ci][index] = {
                **prompt.item_columns(), "solution_bytes": prompt.target_bytes,
                "prediction": text, "correct_strict": score.correct_strict,
                "correct_flexible": score.correct_flexible,
                "correct_numeric": score.correct_numeric, "invalid": score.invalid,
                "correct": float(score.correct_numeric), "erank_per_iter": every[b],
                "erank_answer_per_iter": generating[b], "erank_head_input": head[b][0],
            }

    for batch in batches:
        encoded = [prompts[i] for i in batch]
        if shared:
            prefill, states, (rows, cols, last) = decoder.prompt_pass(encoded)
            ends = BackboneEnds(pre_norm=states[n_iterations][rows, cols],
                                head_input=states[-1][rows, cols])
            del states
            for ci in shared:
                with autocast(device, precision):
                    Y = ends.condition_head_input(conditions[ci], model.final_norm, eval_seed)
                forked = decoder.finish_prefill(prefill, Y, rows, last)
                finish(ci, batch, forked, model.hooks(conditions[ci].hooks(eval_seed)))
        for ci in separate:
            with model.hooks(conditions[ci].hooks(eval_seed)):
                prefill, states, (rows, cols, last) = decoder.prompt_pass(encoded)
                Y = states[-1][rows, cols]
                del states
                prefill = decoder.finish_prefill(prefill, Y, rows, last)
            finish(ci, batch, prefill, model.hooks(conditions[ci].hooks(eval_seed)))
        if progress is not None:
            progress(len(batch) * len(conditions))
    return results

