"""Synthetic multi-step arithmetic word problems in exact GSM8K format (no download).

"Ann has 3 pens. She buys 4 more. She doubles them. How many pens does Ann have?" with
one solution line per step, each with a calculator annotation, then ``#### N``:

    3+4=<<3+4=7>>7
    7*2=<<7*2=14>>14
    #### 14

Depth (number of steps) is drawn uniformly from [min_depth, max_depth]. Item i of a split
depends only on (seed, split, i), so limits and n_items never change an item. Splits are
disjoint by construction: every question opens with "{name} has {start} {objects}.", and
each such opening belongs to one split by its hash (test 10 %, validation 10 %, train
80 %), so two splits never share a question. Numbers stay small (operands in
[min_value, max_value], running totals <= max_total) so a tiny byte-level model can
learn the arithmetic.

    >>> items = SyntheticTask(max_depth=3).load("test", limit=2)
    >>> items[0].depth_annotations in (1, 2, 3)
    True
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import ClassVar

import numpy as np

from ablate.errors import AblateError, unknown_name_error
from ablate.tasks.base import Item, LoadReport, Task, TextFormat, check_limit
from ablate.tasks.gsm8k import ANSWER_MARKER, item_from_record
from ablate.tasks.outcomes import DEFAULT_OUTCOME, LM_EVAL_STOP, SCORING_OPTIONS

MAX_DEPTH = 8
SPLIT_STREAMS = {"train": 0, "validation": 1, "test": 2}
NAMES = (("Ann", "She"), ("Bob", "He"), ("Cal", "He"), ("Dee", "She"))
NAMES += (("Eve", "She"), ("Gus", "He"), ("Ivy", "She"), ("Max", "He"))
OBJECTS = ("apples", "pens", "cards", "eggs", "coins", "books", "shells", "stamps")
ADD_PHRASES = ("buys {n} more", "finds {n} more", "gets {n} more")
SUBTRACT_PHRASES = ("gives away {n}", "loses {n}", "sells {n}")
MULTIPLY_PHRASES = {2: "doubles them", 3: "triples them"}


def split_of_opening(name: str, objects: str, start: int) -> str:
    """The split owning questions that open "{name} has {start} {objects}." (by hash)."""
    key = f"{name}|{objects}|{start}".encode()
    bucket = int(hashlib.sha256(key).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "validation" if bucket == 1 else "train"


@lru_cache(maxsize=64)
def split_openings(split: str, min_value: int, max_value: int) -> tuple[tuple[int, int, int], ...]:
    """(name index, object index, start value) openings owned by ``split``."""
    return tuple(
        (n, o, start)
        for n, o, start in itertools.product(
            range(len(NAMES)), range(len(OBJECTS)), range(min_value, max_value + 1)
        )
        if split_of_opening(NAMES[n][0], OBJECTS[o], start) == split
    )


@dataclass(frozen=True)
class SyntheticTask(Task):
    """Generated arithmetic chains; every field is a task option (see module docstring).
    ``outcome`` and ``stop`` score and stop generations as for GSM8K
    (``ablate.tasks.outcomes``); the others are non-negative integers."""

    n_items: int = 1000  # items per split
    min_depth: int = 1
    max_depth: int = 4
    seed: int = 0
    min_value: int = 1
    max_value: int = 9
    max_total: int = 99
    outcome: str = DEFAULT_OUTCOME
    stop: tuple[str, ...] = LM_EVAL_STOP

    name: ClassVar[str] = "synthetic"
    # A depth-8 target is about 160 bytes; 256 leaves room for the answer line.
    text_format: ClassVar[TextFormat] = TextFormat(max_new_tokens=256)
    splits: ClassVar[tuple[str, ...]] = tuple(SPLIT_STREAMS)

    def __post_init__(self) -> None:
        self._check_scoring_options()
        for spec in fields(self):
            if spec.name in SCORING_OPTIONS:
                continue
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise AblateError(
                    f"synthetic option {spec.name}={value!r} must be a non-negative integer"
                )
        if not 1 <= self.min_depth <= self.max_depth <= MAX_DEPTH:
            raise AblateError(
                f"synthetic depth range [{self.min_depth}, {self.max_depth}] is invalid; "
                f"need 1 <= min_depth <= max_depth <= {MAX_DEPTH}"
            )
        if not 1 <= self.min_value <= self.max_value:
            raise AblateError(
                f"synthetic value range [{self.min_value}, {self.max_value}] is invalid; "
                "need 1 <= min_value <= max_value"
            )
        if self.max_total < 2 * self.max_value:
            raise AblateError(
                f"synthetic max_total={self.max_total} is below 2*max_value={2 * self.max_value}; "
                "raise max_total so every step can add or subtract"
            )

    def load_with_report(
        self, split: str, *, path: str | None = None, limit: int | None = None
    ) -> tuple[list[Item], LoadReport]:
        check_limit(limit)
        if path is not None:
            raise AblateError(
                f"Task 'synthetic' is generated and takes no path (got {path!r}); to read "
                "synthetic data written with write_gsm8k_jsonl, use task 'gsm8k' with that path"
            )
        if split not in SPLIT_STREAMS:
            raise unknown_name_error("synthetic split", split, SPLIT_STREAMS)
        count = self.n_items if limit is None else min(limit, self.n_items)
        items = [self.generate(split, index) for index in range(count)]
        return items, LoadReport(self.name, split, f"synthetic:seed={self.seed}", count, count)

    def generate(self, split: str, index: int) -> Item:
        """Item ``index`` of ``split``; depends only on (seed, split, index) and the options."""
        openings = split_openings(split, self.min_value, self.max_value)
        if not openings:
            raise AblateError(
                f"synthetic value range [{self.min_value}, {self.max_value}] leaves split "
                f"'{split}' no problems; widen it (raise max_value)"
            )
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[split], index])
        # One block of uniforms per item (2 + 3 per step) instead of one numpy call per choice.
        uniforms = iter(rng.random(2 + 3 * self.max_depth).tolist())

        def choose(n: int) -> int:
            return int(next(uniforms) * n)  # uniform on 0..n-1

        name_index, object_index, start = openings[choose(len(openings))]
        question, answer = self._draw(choose, NAMES[name_index], OBJECTS[object_index], start)
        record = {"question": question, "answer": answer}
        return item_from_record(record, f"synthetic[{split}][{index}]", f"{split}-{index:06d}")

    def _draw(
        self, choose: Callable[[int], int], person: tuple[str, str], objects: str, start: int
    ) -> tuple[str, str]:
        """One (question, GSM8K answer) pair with the given opening."""
        name, pronoun = person
        total = start
        depth = self.min_depth + choose(self.max_depth - self.min_depth + 1)
        sentences: list[str] = []
        lines: list[str] = []
        for _ in range(depth):
            operations = []
            if total + self.min_value <= self.max_total:
                operations.append("+")
            if total >= self.min_value:
                operations.append("-")
            if total >= 2 and 2 * total <= self.max_total:
                operations.append("*")
            operation = operations[choose(len(operations))]
            if operation == "+":
                high = min(self.max_value, self.max_total - total)
                operand = self.min_value + choose(high - self.min_value + 1)
                phrase = ADD_PHRASES[choose(len(ADD_PHRASES))].format(n=operand)
                result = total + operand
            elif operation == "-":
                high = min(self.max_value, total)
                operand = self.min_value + choose(high - self.min_value + 1)
                phrase = SUBTRACT_PHRASES[choose(len(SUBTRACT_PHRASES))].format(n=operand)
                result = total - operand
            else:
                factors = [f for f in MULTIPLY_PHRASES if f * total <= self.max_total]
                operand = factors[choose(len(factors))]
                phrase = MULTIPLY_PHRASES[operand]
                result = total * operand
                choose(1)  # keep three draws per step
            expression = f"{total}{operation}{operand}"
            lines.append(f"{expression}=<<{expression}={result}>>{result}")
            sentences.append(f"{pronoun} {phrase}.")
            total = result
        question = (
            f"{name} has {start} {objects}. {' '.join(sentences)} "
            f"How many {objects} does {name} have?"
        )
        answer = "\n".join(lines) + f"\n{ANSWER_MARKER} {total}"
        return question, answer

