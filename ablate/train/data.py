"""Training data: documents -> one token stream -> fixed windows (spec §7.1 TokenDataset).

Task documents are laid out exactly as evaluation reads them ("Question: ...\\nAnswer:
...\\n#### N", ``ablate.tasks.prompts``) and joined by the task's exemplar separator
(a blank line); text files are their non-blank lines. The training stream is cut into
windows of ``seq_len + 1`` tokens with stride ``seq_len`` (input = first ``seq_len``,
target = last ``seq_len``; ``floor(N / seq_len) - 1`` windows; no padding, no masking),
and batches walk through a fresh seeded permutation of the windows every epoch, so the
batch of any step is a pure function of (seed, step): resuming needs only the step.

    >>> corpus = load_corpus(TrainConfig(data="synthetic", val_items=50))  # doctest: +SKIP
    >>> stream = encode_text(ByteTokenizer(), corpus.train_text, "train")  # doctest: +SKIP
    >>> windows = TokenWindows(stream, 128)  # doctest: +SKIP
    >>> x, y = windows.batch(batch_indices(len(windows), 8, step=0, seed=0))  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from ablate.errors import AblateError
from ablate.tasks import Item, TextFormat, get_task
from ablate.tasks.prompts import render_prompt, render_target
from ablate.tasks.text import join_nonblank_lines, load_text_documents
from ablate.tokenizer import Tokenizer, check_encodable
from ablate.train.config import TrainConfig, parse_data, synthetic_options

# Share of text-file lines held out for validation (text data has no item splits).
TEXT_VALIDATION_SHARE = 0.1
# Separator that precedes each validation document of text data (tasks use their own).
TEXT_SEPARATOR = "\n"


@dataclass(frozen=True)
class Corpus:
    """Training text, validation text and the held-out items for answer accuracy.

    ``val_text`` starts with ``separator`` (every validation document follows one): its
    first token is the one token of the stream that is never predicted, and it is plain
    ASCII, so the bytes the predicted tokens spell are known exactly.
    """

    source: str
    train_text: str
    val_text: str
    separator: str
    val_items: tuple[Item, ...]
    text_format: TextFormat | None
    n_train_documents: int
    n_val_documents: int
    majority_answer: str | None = None  # the most common training answer (a baseline)


def document_text(item: Item, text_format: TextFormat) -> str:
    """One task item as training text: prompt + target, the evaluation layout."""
    return render_prompt(item, text_format) + render_target(item, text_format)


def load_corpus(config: TrainConfig) -> Corpus:
    """The documents named by ``config.data``, split into train and held-out validation."""
    kind, argument = parse_data(config.data)
    if kind == "text":
        return _text_corpus(argument)
    if kind == "synthetic":
        task = get_task("synthetic", **synthetic_options(argument))
        train_items = task.load("train", limit=config.train_items or None)
        val_items = task.load("validation", limit=config.val_items)
    else:
        task = get_task("gsm8k")
        # GSM8K test stays untouched for evaluation: validation is the tail of train.
        items = task.load("train", path=argument or None)
        if len(items) <= config.val_items:
            raise AblateError(
                f"gsm8k train data at {argument or 'the hub'} has {len(items)} problems, not "
                f"more than val_items={config.val_items}; lower --val-items"
            )
        val_items = items[len(items) - config.val_items :]
        train_items = items[: len(items) - config.val_items]
        if config.train_items:
            train_items = train_items[: config.train_items]
    text_format = task.text_format
    separator = text_format.exemplar_separator
    order = np.random.default_rng(config.seed).permutation(len(train_items))
    train_docs = [document_text(train_items[int(i)], text_format) for i in order]
    val_docs = [document_text(item, text_format) for item in val_items]
    return Corpus(
        source=config.data,
        train_text=separator.join(train_docs),
        val_text="".join(separator + doc for doc in val_docs),
        separator=separator,
        val_items=tuple(val_items),
        text_format=text_format,
        n_train_documents=len(train_docs),
        n_val_documents=len(val_docs),
        majority_answer=_most_common([item.answer for item in train_items]),
    )


def _most_common(answers: list[str]) -> str | None:
    """The most frequent answer; ties go to the one seen first."""
    return Counter(answers).most_common(1)[0][0] if answers else None


def _text_corpus(path: str) -> Corpus:
    documents = load_text_documents(path)
    lines = join_nonblank_lines(documents).splitlines(keepends=True)
    if len(lines) < 2:
        raise AblateError(
            f"text data {path} has {len(lines)} non-blank line(s); training needs at least "
            "two (the last tenth of the lines is held out for validation)"
        )
    n_val = max(1, int(len(lines) * TEXT_VALIDATION_SHARE))
    return Corpus(
        source=f"text:{path}",
        train_text="".join(lines[:-n_val]),
        val_text=TEXT_SEPARATOR + "".join(lines[-n_val:]),
        separator=TEXT_SEPARATOR,
        val_items=(),
        text_format=None,
        n_train_documents=len(documents),
        n_val_documents=n_val,
    )


def encode_text(
    tokenizer: Tokenizer, text: str, source: str, vocab_size: int | None = None
) -> torch.Tensor:
    """1-D int64 token stream of ``text`` (checked to decode back to ``text``)."""
    return torch.tensor(
        check_encodable(tokenizer, text, source, vocab_size=vocab_size), dtype=torch.long
    )


class TokenWindows:
    """The research ``TokenDataset``: window i is stream[i*S : i*S + S + 1]."""

    def __init__(self, stream: torch.Tensor, seq_len: int) -> None:
        self.stream = stream
        self.seq_len = seq_len
        self.n_windows = len(stream) // seq_len - 1
        if self.n_windows < 1:
            raise AblateError(
                f"training data has {len(stream)} tokens, fewer than 2*seq_len = {2 * seq_len}; "
                "lower --seq-len or add data (raise --train-items)"
            )

    def __len__(self) -> int:
        return self.n_windows

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, each (len(indices), S)."""
        S = self.seq_len
        starts = torch.as_tensor(indices, dtype=torch.long) * S
        rows = self.stream[starts[:, None] + torch.arange(S + 1)]  # (b, S+1)
        return rows[:, :-1], rows[:, 1:]


def batch_indices(n_windows: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Window indices of the batch at ``step`` (0-based): the step-th slice of the endless
    sequence of per-epoch permutations ``default_rng([seed, epoch]).permutation``."""
    chosen: list[int] = []
    position = step * batch_size
    while len(chosen) < batch_size:
        epoch, offset = divmod(position, n_windows)
        permutation = np.random.default_rng([seed, epoch]).permutation(n_windows)
        take = min(batch_size - len(chosen), n_windows - offset)
        chosen.extend(int(i) for i in permutation[offset : offset + take])
        position += take
    return np.asarray(chosen, dtype=np.int64)


def validation_windows(
    stream: torch.Tensor, seq_len: int, pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows that predict every token of ``stream`` but the first exactly once.

    Full windows follow the TokenDataset layout; the remainder becomes one last window
    whose padding targets are -100 (ignored by the loss, never counted). Returns inputs
    and targets, each (n, S).
    """
    S = seq_len
    n_targets = len(stream) - 1
    if n_targets < 1:
        raise AblateError("validation data is a single token; raise --val-items")
    n = -(-n_targets // S)
    inputs = torch.full((n, S), pad_id, dtype=torch.long)
    targets = torch.full((n, S), -100, dtype=torch.long)
    flat_inputs, flat_targets = inputs.view(-1), targets.view(-1)
    flat_inputs[:n_targets] = stream[:-1]
    flat_targets[:n_targets] = stream[1:]
    return inputs, targets
