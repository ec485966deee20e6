"""Token layout of matrix-CODI (spec §9) and padded batches of it.

Teacher: ``question + "\\n" + cot + " The answer is:" + " " + gold + suffix`` where ``cot``
is the ``<<expr=value>>`` steps joined by spaces with the last step dropped (CODI's
convention: the last step states the answer). Student: ``question + "\\n"``, ``<bot>``,
n latent positions, then the tail ``<eot> The answer is: gold suffix``. The ``":"`` that
closes the cue is where distillation matches teacher and student, and the position whose
logits predict the answer.

Pieces are encoded separately and concatenated, so every index (cue, first target) is
known exactly whatever the tokenizer. Questions are left-padded (every ``<bot>`` sits in
the same column, so the latent loop runs in lockstep); teacher and tail are right-padded.

    >>> example = encode_example(tokenizer, item, CodiLayout())       # doctest: +SKIP
    >>> batch = collate([example], pad_id=tokenizer.special_id("<pad>"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ablate.errors import AblateError
from ablate.tasks.base import Item
from ablate.tasks.extraction import codi_gold
from ablate.tokenizer import Tokenizer

BOT, EOT, PAD = "<bot>", "<eot>", "<pad>"
CUE = " The answer is:"
# Teacher CE targets: CODI's paper trains the teacher on its whole chain of thought; the
# research script (spec §9) only on the tokens after the last ":".
TEACHER_TARGETS = ("cot_and_answer", "answer")


@dataclass(frozen=True)
class CodiLayout:
    """The fixed strings around questions and answers.

    ``answer_suffix`` ends every answer: "\\n" for byte models so greedy decoding has a
    stop token; "" for the research GPT-2 runs, which stop at EOS or the token budget.
    """

    question_suffix: str = "\n"
    cue: str = CUE
    answer_suffix: str = ""

    def __post_init__(self) -> None:
        if not self.cue.endswith(":"):
            raise AblateError(f"CODI cue {self.cue!r} must end with ':' "
                              "(distillation aligns there)")


@dataclass(frozen=True)
class CodiExample:
    """Token ids of one problem in every form CODI needs.

    ``teacher_cue``/``tail_cue`` index the cue's last token in ``teacher_ids``/``tail_ids``;
    ``teacher_start`` is the first teacher position whose next token is a CE target
    (question end for "cot_and_answer", the cue for "answer").
    """

    question_ids: tuple[int, ...]
    teacher_ids: tuple[int, ...]
    teacher_cue: int
    teacher_start: int
    tail_ids: tuple[int, ...]
    tail_cue: int
    answer: str
    steps: tuple[str, ...]  # chain-of-thought steps the teacher sees (last one dropped)


def clean_answer(item: Item) -> str:
    """The gold answer as CODI writes it: commas removed, a trailing "." stripped."""
    return codi_gold(item.answer)


def teacher_steps(item: Item) -> tuple[str, ...]:
    """The calculator steps the teacher sees: all but the last (which states the answer)."""
    return tuple(item.steps[:-1])


def encode_example(
    tokenizer: Tokenizer,
    item: Item,
    layout: CodiLayout,
    *,
    teacher_targets: str = "cot_and_answer",
    max_question_tokens: int | None = None,
) -> CodiExample:
    """Encode one item; questions longer than ``max_question_tokens`` keep their end
    (the research script left-truncates: the question sentence is last)."""
    if teacher_targets not in TEACHER_TARGETS:
        raise AblateError(f"teacher_targets '{teacher_targets}' is not one of {TEACHER_TARGETS}")
    eot = tokenizer.special_id(EOT)
    question = tokenizer.encode(item.question.strip() + layout.question_suffix)
    if max_question_tokens is not None and len(question) > max_question_tokens:
        question = question[-max_question_tokens:]
    steps = teacher_steps(item)
    cot = tokenizer.encode(" ".join(steps)) if steps else []
    cue = tokenizer.encode(layout.cue)
    answer = clean_answer(item)
    answer_ids = tokenizer.encode(" " + answer + layout.answer_suffix)
    teacher = question + cot + cue + answer_ids
    teacher_cue = len(question) + len(cot) + len(cue) - 1
    start = len(question) - 1 if teacher_targets == "cot_and_answer" else teacher_cue
    tail = [eot] + cue + answer_ids
    return CodiExample(
        question_ids=tuple(question),
        teacher_ids=tuple(teacher),
        teacher_cue=teacher_cue,
        teacher_start=start,
        tail_ids=tuple(tail),
        tail_cue=len(cue),
        answer=answer,
        steps=steps,
    )


def prompt_tail(tokenizer: Tokenizer, layout: CodiLayout) -> list[int]:
    """The evaluation tail after the latents: ``<eot>`` and the cue (the model answers)."""
    return [tokenizer.special_id(EOT)] + tokenizer.encode(layout.cue)


def curriculum_tail(
    tokenizer: Tokenizer, example: CodiExample, layout: CodiLayout, n_replaced: int
) -> tuple[tuple[int, ...], int]:
    """COCONUT-style tail: ``<eot>``, the steps not yet replaced by latents, cue, answer.

    Returns the ids and the index of their first CE target position (``<eot>`` itself:
    everything after it is language the student must still write).
    """
    kept = example.steps[n_replaced:]
    text = "".join(" " + step for step in kept)
    ids = [tokenizer.special_id(EOT)] + (tokenizer.encode(text) if text else [])
    ids += list(example.tail_ids[1:])
    return tuple(ids), 0


@dataclass
class Padded:
    """ids (B, L) int64 and mask (B, L) bool, True on real tokens."""

    ids: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> Padded:
        return Padded(self.ids.to(device), self.mask.to(device))


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int, *, left: bool) -> Padded:
    """Pad to the longest sequence, on the left (questions) or right (teacher, tails)."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, span] = True
    return Padded(ids, mask)


@dataclass
class CodiBatch:
    """A padded batch: question (left-padded), teacher and tail (right-padded).

    ``teacher`` holds the teacher sequence from the question's LAST token on (right-padded),
    so teacher and student can share one pass over the rest of the question (the same
    positions and causal attention give the same states). ``teacher_cue``,
    ``teacher_start`` index into it; ``tail_cue``, ``tail_start`` into ``tail``; all (B,)
    int64. A CE covers positions i with start <= i whose next token i + 1 is real.
    """

    question: Padded
    teacher: Padded
    tail: Padded
    teacher_cue: torch.Tensor
    teacher_start: torch.Tensor
    tail_cue: torch.Tensor
    tail_start: torch.Tensor

    def to(self, device: torch.device | str) -> CodiBatch:
        return CodiBatch(
            self.question.to(device),
            self.teacher.to(device),
            self.tail.to(device),
            self.teacher_cue.to(device),
            self.teacher_start.to(device),
            self.tail_cue.to(device),
            self.tail_start.to(device),
        )


def collate(
    examples: Sequence[CodiExample],
    pad_id: int,
    tails: Sequence[tuple[Sequence[int], int]] | None = None,
) -> CodiBatch:
    """Pad ``examples``; ``tails`` overrides the student tails as (ids, first target index)
    (the curriculum), else the CODI tail is used with targets after its cue."""
    if not examples:
        raise AblateError("cannot build a CODI batch from zero examples")
    if any(not e.question_ids for e in examples):
        raise AblateError("a CODI question encodes to zero tokens; drop empty questions")
    if tails is None:
        tails = [(e.tail_ids, e.tail_cue) for e in examples]
    shift = [len(e.question_ids) - 1 for e in examples]
    return CodiBatch(
        question=pad_sequences([e.question_ids for e in examples], pad_id, left=True),
        teacher=pad_sequences([e.teacher_ids[s:] for e, s in zip(examples, shift, strict=True)],
                              pad_id, left=False),
        tail=pad_sequences([t for t, _ in tails], pad_id, left=False),
        teacher_cue=torch.tensor(
            [e.teacher_cue - s for e, s in zip(examples, shift, strict=True)], dtype=torch.long),
        teacher_start=torch.tensor(
            [e.teacher_start - s for e, s in zip(examples, shift, strict=True)], dtype=torch.long),
        tail_cue=torch.tensor([e.tail_cue for e in examples], dtype=torch.long),
        tail_start=torch.tensor([s for _, s in tails], dtype=torch.long),
    )


def target_mask(mask: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """(B, L) bool: positions i >= start whose next token i + 1 is real (a CE target).

    Padding never counts: the research script keeps padded tail labels in its student CE
    (spec §9 quirk); this layout deliberately does not.
    """
    B, L = mask.shape
    position = torch.arange(L, device=mask.device)[None]  # (1, L)
    next_real = torch.zeros_like(mask)
    next_real[:, :-1] = mask[:, 1:]
    return next_real & mask & (position >= start[:, None])
