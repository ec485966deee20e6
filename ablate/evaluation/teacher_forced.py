"""Teacher-forced evaluation: score the gold target given the prompt, under each condition.

Each item is one sequence, prompt + target tokens, right-padded in length-sorted batches
(causal attention: padding after a row never reaches its real tokens, so it changes no
metric). The head input at position p predicts token p + 1; from the target-predicting
positions come ``solution_nats`` (all target tokens), ``answer_loglik`` and
``tf_exact_match`` (the answer tokens, i.e. those overlapping the answer's byte span).
A sequence longer than the model's ``max_len`` loses prompt tokens from the left (counted
in ``prompt_truncated``); a target that cannot fit is an error.

    >>> examples = encode_forced(tokenizer, items, task.text_format, max_len=512)  # doctest: +SKIP
    >>> per_condition = run_teacher_forced(model, examples, conditions, n_iterations=8,
    ...                                    eval_seed=0)                             # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from ablate.errors import AblateError
from ablate.evaluation.batching import autocast, length_sorted_batches, right_pad, within_memory
from ablate.evaluation.ranks import RankSums
from ablate.evaluation.records import bits_per_byte, item_columns
from ablate.evaluation.shared_backbone import BackboneEnds, split_conditions
from ablate.interventions import Condition
from ablate.rank import effective_rank
from ablate.tasks.base import Item, TextFormat
from ablate.tasks.prompts import teacher_forced_example
from ablate.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForcedExample:
    """One item as token ids; ``answer_tokens`` is [start, end) into ``target_ids``."""

    item: Item
    prompt_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    answer_tokens: tuple[int, int]
    prompt_hash: str
    target_hash: str
    target_bytes: int
    prompt_truncated: int

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.target_ids)

    def item_columns(self) -> dict[str, Any]:
        return item_columns(
            self.item, prompt_hash=self.prompt_hash, target_hash=self.target_hash,
            n_prompt_tokens=len(self.prompt_ids), n_target_tokens=len(self.target_ids),
            prompt_truncated=self.prompt_truncated,
        )


def answer_token_span(
    tokenizer: Tokenizer, ids: Sequence[int], span: tuple[int, int]
) -> tuple[int, int]:
    """[first, last) token indices of ``ids`` whose bytes overlap the byte ``span``.

    Token boundaries come from decoding prefixes, which works for any tokenizer (byte or
    BPE); a binary search needs O(log n) decodes.
    """
    start, end = span

    def covered(i: int) -> int:  # bytes of the first i tokens
        return tokenizer.n_bytes(tokenizer.decode(list(ids[:i])))

    def smallest(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid + 1
        return lo

    first = smallest(0, len(ids), lambda i: covered(i + 1) > start)
    last = smallest(first + 1, len(ids), lambda j: covered(j) >= end)
    assert first < last <= len(ids), (span, len(ids))
    return first, last


def encode_forced(
    tokenizer: Tokenizer, items: Sequence[Item], text_format: TextFormat, max_len: int
) -> list[ForcedExample]:
    """Token ids of every item's (prompt, target), prompts left-truncated to fit ``max_len``."""
    examples = []
    n_truncated = 0
    for item in items:
        example = teacher_forced_example(item, text_format)
        prompt = tokenizer.encode(example.prompt)
        target = tokenizer.encode(example.target)
        excess = len(prompt) + len(target) - max_len
        if excess >= len(prompt):
            raise AblateError(
                f"item {item.item_id}: target has {len(target)} tokens and the model's "
                f"max_len is {max_len}, leaving no room for the prompt; drop long items "
                "(e.g. a smaller limit or a filtered split) or use a model with a larger max_len"
            )
        if excess > 0:
            prompt = prompt[excess:]
            n_truncated += 1
        examples.append(ForcedExample(
            item=item,
            prompt_ids=tuple(prompt),
            target_ids=tuple(target),
            answer_tokens=answer_token_span(tokenizer, target, example.answer_span),
            prompt_hash=example.prompt_hash,
            target_hash=example.target_hash,
            target_bytes=len(example.target_bytes),
            prompt_truncated=max(excess, 0),
        ))
    if n_truncated:
        logger.warning("%d of %d prompts truncated from the left to fit max_len=%d",
                       n_truncated, len(items), max_len)
    return examples


@dataclass
class _Layout:
    """Where one batch's tokens sit: N real positions (rows, cols), and among them the S
    target-predicting positions (``scored``, flat indices into the N)."""

    ids: torch.Tensor  # (B, L)
    rows: torch.Tensor  # (N,)
    cols: torch.Tensor  # (N,)
    scored: torch.Tensor  # (S,)
    scored_item: torch.Tensor  # (S,)
    scored_target: torch.Tensor  # (S,)
    answer: torch.Tensor  # (S,) bool: predicts an answer token
    n_items: int

    @classmethod
    def build(cls, batch: Sequence[ForcedExample], device: torch.device) -> _Layout:
        rows, cols, scored, scored_item, targets, answer = [], [], [], [], [], []
        offset = 0
        for b, example in enumerate(batch):
            n, n_prompt = example.length, len(example.prompt_ids)
            rows += [b] * n
            cols += range(n)
            first, last = example.answer_tokens
            for j, token in enumerate(example.target_ids):
                scored.append(offset + n_prompt - 1 + j)
                scored_item.append(b)
                targets.append(token)
                answer.append(first <= j < last)
            offset += n

        def tensor(values: list, dtype: torch.dtype = torch.long) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)

        return cls(
            ids=right_pad([e.prompt_ids + e.target_ids for e in batch], device),
            rows=tensor(rows), cols=tensor(cols), scored=tensor(scored),
            scored_item=tensor(scored_item), scored_target=tensor(targets),
            answer=tensor(answer, torch.bool), n_items=len(batch),
        )


def _segment_sum(values: torch.Tensor, segment: torch.Tensor, n: int) -> list[float]:
    total = torch.zeros(n, dtype=torch.float64, device=values.device)
    return total.index_add_(0, segment, values.to(torch.float64)).tolist()


def _state_ranks(eranks: torch.Tensor, layout: _Layout) -> tuple[list, list]:
    """Per item: mean effective rank of M(0..T) over all positions and over the
    positions that predict answer tokens, from ``eranks`` (T+1, N) at the N positions."""
    every = RankSums(layout.n_items, eranks.shape[0])
    every.add(eranks, layout.rows)
    answer_flat = layout.scored[layout.answer].cpu()
    answer = RankSums(layout.n_items, eranks.shape[0])
    answer.add(eranks[:, answer_flat], layout.rows.cpu()[answer_flat])
    return every.means(), answer.means()


def _forward(model: torch.nn.Module, layout: _Layout, T: int,
             precision_context: Callable[[], AbstractContextManager],
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One pass under whatever hooks are attached: (effective ranks (T+1, N) of M(0..T),
    M(T) (N, d, d), head input Y (N, d, d)) at the N real positions.

    Each state is reduced to its ranks (and M(T) to its real positions) as the pass
    produces it, by hooks attached after any condition's (so they see its edits), instead
    of keeping all T+1 full states: at 32 GSM8K items that is ~1 GiB less at the peak.
    """
    rows, cols = layout.rows, layout.cols
    eranks: list[torch.Tensor] = []
    ends: dict[str, torch.Tensor] = {}

    def measure(M: torch.Tensor, name: str) -> None:
        at_positions = M[rows, cols]  # (N, d, d)
        eranks.append(effective_rank(at_positions).cpu())
        if len(eranks) == T + 1:
            ends["pre_norm"] = at_positions

    points = ["embed.hook_out", *(f"iter.{t}.hook_out" for t in range(1, T + 1))]
    with precision_context(), model.hooks(dict.fromkeys(points, measure)):
        Y = model(layout.ids, T, head=False).states[-1]
    return torch.stack(eranks), ends["pre_norm"], Y[rows, cols]


def _metrics(
    model: torch.nn.Module,
    layout: _Layout,
    Y: torch.Tensor,
    ranks: tuple[list, list],
    precision_context: Callable[[], AbstractContextManager],
    head_erank: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """Metric columns per item from the head inputs Y (N, d, d) at the real positions
    (``head_erank`` (N,): their effective ranks, when already known)."""
    with precision_context():
        logits = model.head(Y[layout.scored])  # (S, V)
    logp = logits.float().log_softmax(-1).gather(1, layout.scored_target[:, None])[:, 0]
    miss = (logits.argmax(-1) != layout.scored_target) & layout.answer
    n = layout.n_items
    nats = [-v for v in _segment_sum(logp, layout.scored_item, n)]
    answer_loglik = _segment_sum(logp * layout.answer, layout.scored_item, n)
    misses = _segment_sum(miss, layout.scored_item, n)
    head_sums = RankSums(n, 1)
    if head_erank is None:
        head_erank = effective_rank(Y).cpu()
    head_sums.add(head_erank[None], layout.rows)
    per_iter, answer_per_iter = ranks
    head_means = head_sums.means()
    return [
        {
            "answer_loglik": answer_loglik[b],
            "solution_nats": nats[b],
            "tf_exact_match": misses[b] == 0,
            "correct": float(misses[b] == 0),
            "erank_per_iter": per_iter[b],
            "erank_answer_per_iter": answer_per_iter[b],
            "erank_head_input": head_means[b][0],
        }
        for b in range(n)
    ]


def run_teacher_forced(
    model: torch.nn.Module,
    examples: Sequence[ForcedExample],
    conditions: Sequence[Condition],
    *,
    n_iterations: int,
    eval_seed: int,
    batch_size: int = 16,
    device: torch.device | None = None,
    precision: str = "float32",
    shared_backbone: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[list[dict[str, Any]]]:
    """Item + metric columns, ``[condition][item]``, in the given orders.

    Conditions acting only after the backbone share one pass per batch; the rest run
    with their hooks, one pass each (``shared_backbone=False`` runs every condition so).
    """
    device = device if device is not None else torch.device("cpu")
    results: list[list[dict[str, Any]]] = [[{} for _ in examples] for _ in conditions]
    shared, separate = split_conditions(conditions, shared_backbone)
    T = n_iterations

    def precision_context() -> AbstractContextManager:
        return autocast(device, precision)

    def store(ci: int, batch: list[int], metrics: list[dict[str, Any]]) -> None:
        for b, index in enumerate(batch):
            example = examples[index]
            row = example.item_columns()
            row["solution_bytes"] = example.target_bytes
            row["bits_per_byte"] = bits_per_byte(metrics[b]["solution_nats"], example.target_bytes)
            row["prediction"] = ""
            results[ci][index] = {**row, **metrics[b]}

    lengths = [e.length for e in examples]
    d = model.config.mat_dim
    for whole in length_sorted_batches(lengths, batch_size):
        for batch in within_memory(whole, lengths, d):
            _run_pass(model, [examples[i] for i in batch], batch, conditions, shared, separate,
                      T, eval_seed, device, precision_context, store)
        if progress is not None:
            progress(len(whole) * len(conditions))
    return results


def _run_pass(model: torch.nn.Module, batch_examples: list[ForcedExample], batch: list[int],
              conditions: Sequence[Condition], shared: list[int], separate: list[int], T: int,
              eval_seed: int, device: torch.device,
              precision_context: Callable[[], AbstractContextManager],
              store: Callable[[int, list[int], list[dict[str, Any]]], None]) -> None:
    """Every condition's metrics for one forward pass's items."""
    layout = _Layout.build(batch_examples, device)
    if shared:
        eranks, pre_norm, head_input = _forward(model, layout, T, precision_context)
        ranks = _state_ranks(eranks, layout)
        ends = BackboneEnds(pre_norm=pre_norm, head_input=head_input)
        for ci in shared:
            with precision_context():
                Y = ends.condition_head_input(conditions[ci], model.final_norm, eval_seed)
            erank = ends.head_input_erank(conditions[ci], Y, eval_seed)
            store(ci, batch, _metrics(model, layout, Y, ranks, precision_context, erank))
    for ci in separate:
        with model.hooks(conditions[ci].hooks(eval_seed)):
            eranks, _, Y = _forward(model, layout, T, precision_context)
        ranks = _state_ranks(eranks, layout)
        store(ci, batch, _metrics(model, layout, Y, ranks, precision_context))
