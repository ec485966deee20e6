"""Held-out validation during training: loss, exact bits per byte, rank per iteration,
and teacher-forced answer accuracy.

* ``loss``: mean cross-entropy in nats per predicted token (padding never counts).
* ``bpb``: total nats / ln 2 / total UTF-8 bytes of the text the predicted tokens spell.
  Bytes come from the text, not the token count, so the value stays exact for BPE
  tokenizers (for the byte tokenizer the two agree). 8.0 is a uniform byte model.
* ``rank_per_iter``: mean effective rank (``ablate.rank.effective_rank``) over every real
  position of the validation windows, for each state M(0..T) before the final norm.
* ``answer_accuracy``: share of held-out problems whose answer after "#### " the model
  reproduces token for token by argmax under teacher forcing (the ``tf_exact_match`` of
  evaluation), each problem read alone from position 0 as evaluation reads it;
  ``answer_token_accuracy`` is the share of answer tokens reproduced (partial credit).

All of it runs in eval mode under ``torch.no_grad`` (bf16 autocast on CUDA).

    >>> data = build_validation_set(corpus, tok, seq_len=128, max_len=256,  # doctest: +SKIP
    ...                             train_stream=stream)
    >>> metrics = validate(model, data, n_iterations=4, batch_size=16)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ablate.model import MatrixThinker
from ablate.rank import effective_rank
from ablate.tasks.prompts import teacher_forced_example
from ablate.tokenizer import Tokenizer
from ablate.train.data import Corpus, encode_text, validation_windows

LN2 = math.log(2.0)


def bits_per_byte(total_nats: float, n_bytes: int) -> float:
    """Exact bits per UTF-8 byte: total nats / ln 2 / bytes."""
    return total_nats / LN2 / n_bytes


def target_bytes(tokenizer: Tokenizer, text: str, stream: list[int] | torch.Tensor) -> int:
    """UTF-8 bytes spelled by every token of ``stream`` (the encoding of ``text``) but the
    first, which no window predicts."""
    first = tokenizer.decode([int(stream[0])])
    assert text.startswith(first), "validation text must start with a whole-character token"
    return tokenizer.n_bytes(text) - tokenizer.n_bytes(first)


@dataclass(frozen=True)
class AnswerExample:
    """Token ids of one held-out problem; ``ids[answer_start:]`` is the answer."""

    item_id: str
    ids: tuple[int, ...]
    answer_start: int


@dataclass(frozen=True)
class ValidationSet:
    """Everything ``validate`` reads; ``inputs``/``targets`` (n, S), targets -100 = padding."""

    inputs: torch.Tensor
    targets: torch.Tensor
    n_bytes: int
    answers: tuple[AnswerExample, ...]
    n_answers_too_long: int
    unigram_bpb: float
    majority_answer_accuracy: float | None


def answer_examples(
    corpus: Corpus, tokenizer: Tokenizer, max_len: int, vocab_size: int
) -> tuple[list[AnswerExample], int, float | None]:
    """Teacher-forced examples of the held-out items that fit in ``max_len`` positions,
    how many did not fit, and the accuracy of always answering the most common training
    answer on them (what a model that ignores the problem can reach)."""
    if corpus.text_format is None:
        return [], 0, None
    examples: list[AnswerExample] = []
    too_long = majority_hits = 0
    for item in corpus.val_items:
        example = teacher_forced_example(item, corpus.text_format)
        before = example.target_bytes[: example.answer_span[0]].decode("utf-8")
        context = encode_text(tokenizer, example.prompt + before, item.item_id, vocab_size)
        answer = encode_text(tokenizer, example.answer_text, item.item_id, vocab_size)
        ids = tuple(int(i) for i in torch.cat([context, answer]))
        if len(ids) > max_len:
            too_long += 1
            continue
        examples.append(AnswerExample(item.item_id, ids, len(context)))
        majority_hits += item.answer == corpus.majority_answer
    return examples, too_long, (majority_hits / len(examples) if examples else None)


def build_validation_set(
    corpus: Corpus,
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    max_len: int,
    train_stream: torch.Tensor,
    vocab_size: int | None = None,
) -> ValidationSet:
    """Encode the held-out text and problems once, before training starts."""
    vocab = tokenizer.vocab_size if vocab_size is None else vocab_size
    stream = encode_text(tokenizer, corpus.val_text, "validation text", vocab)
    inputs, targets = validation_windows(stream, seq_len)
    n_bytes = target_bytes(tokenizer, corpus.val_text, stream)
    answers, too_long, majority = answer_examples(corpus, tokenizer, max_len, vocab)
    return ValidationSet(
        inputs=inputs,
        targets=targets,
        n_bytes=n_bytes,
        answers=tuple(answers),
        n_answers_too_long=too_long,
        unigram_bpb=unigram_bpb(train_stream, stream[1:], vocab, n_bytes),
        majority_answer_accuracy=majority,
    )


def unigram_bpb(
    train_stream: torch.Tensor, targets: torch.Tensor, vocab_size: int, n_bytes: int
) -> float:
    """Bits per byte of the best context-free model: token frequencies of the training
    stream (add-one smoothed). The bar a model must clear to have learned any context."""
    counts = torch.bincount(train_stream, minlength=vocab_size).double() + 1.0
    log_p = counts.log() - counts.sum().log()
    return bits_per_byte(float(-log_p[targets].sum()), n_bytes)


def _autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def validate(
    model: MatrixThinker, data: ValidationSet, *, n_iterations: int, batch_size: int
) -> dict:
    """Validation metrics (module docstring) as a JSON-ready dict."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_nats = 0.0
    n_tokens = 0
    rank_sums = torch.zeros(n_iterations + 1, dtype=torch.float64)
    try:
        for start in range(0, len(data.inputs), batch_size):
            x = data.inputs[start : start + batch_size].to(device)
            y = data.targets[start : start + batch_size].to(device)
            with _autocast(device):
                out = model(x, n_iterations=n_iterations, return_states=True)
            logits = out.logits.float()
            total_nats += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            real = y != -100  # (b, S): input positions whose next token exists
            n_tokens += int(real.sum())
            for t, M in enumerate(out.states):  # M: (b, S, d, d)
                rank_sums[t] += effective_rank(M[real].float()).sum().cpu()
        accuracy, token_accuracy = _answer_accuracy(
            model, data.answers, n_iterations, batch_size, device
        )
    finally:
        model.train(was_training)
    return {
        "loss": total_nats / n_tokens,
        "bpb": bits_per_byte(total_nats, data.n_bytes),
        "n_tokens": n_tokens,
        "n_bytes": data.n_bytes,
        "rank_per_iter": (rank_sums / n_tokens).tolist(),
        "answer_accuracy": accuracy,
        "answer_token_accuracy": token_accuracy,
        "n_answer_items": len(data.answers),
    }


def _answer_accuracy(
    model: MatrixThinker,
    answers: tuple[AnswerExample, ...],
    n_iterations: int,
    batch_size: int,
    device: torch.device,
) -> tuple[float | None, float | None]:
    """(share of answers reproduced exactly, share of answer tokens reproduced)."""
    if not answers:
        return None, None
    exact = tokens_right = tokens_total = 0
    for start in range(0, len(answers), batch_size):
        chunk = answers[start : start + batch_size]
        width = max(len(example.ids) for example in chunk)
        # Right padding: causal attention keeps it from touching the real positions.
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, example in enumerate(chunk):
            ids[row, : len(example.ids)] = torch.tensor(example.ids)
        with _autocast(device):
            predicted = model(ids.to(device), n_iterations=n_iterations).logits.argmax(-1).cpu()
        for row, example in enumerate(chunk):
            a, b = example.answer_start, len(example.ids)
            # The logits at position p predict token p + 1.
            hits = predicted[row, a - 1 : b - 1] == ids[row, a:b]
            exact += bool(hits.all())
            tokens_right += int(hits.sum())
            tokens_total += b - a
    return exact / len(answers), tokens_right / tokens_total
