"""OpenR1-Math: competition-style math problems with LaTeX answers.

Reads ``open-r1/OpenR1-Math-220k`` (config "default", whose only split is "train") from
the hub, or local .parquet/.jsonl/.json files in its schema (``problem``, ``solution``,
``answer``, optionally ``uuid``, ``generations``, ``problem_type``, ...; extra fields are
ignored). The gold answer is the ``answer`` field, else the last ``\\boxed{}`` of the
solution. Records whose gold cannot be parsed (missing, "proof"/"notfound", unbalanced
braces; with ``numeric_only`` also non-numeric) are excluded and counted in the
``LoadReport``, never scored.

    >>> task = OpenR1Task()
    >>> items, report = task.load_with_report("train", path="r1.parquet")  # doctest: +SKIP
    >>> report.excluded                                                    # doctest: +SKIP
    {'no_gold': 2}
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ablate.errors import AblateError
from ablate.tasks.base import (
    Item,
    LoadReport,
    Task,
    TextFormat,
    check_limit,
    doc_hash,
    require_string,
)
from ablate.tasks.extraction import (
    braces_balanced,
    last_boxed,
    normalize_math,
    parse_math_number,
)
from ablate.tasks.gsm8k import count_lines
from ablate.tasks.records import Record, open_records

SCHEMA = (
    "OpenR1-Math schema {'problem': str, 'solution': str, 'answer': str, optional 'uuid': str, ...}"
)
# NuminaMath marks problems without a checkable answer with these words.
NON_ANSWERS = frozenset({"proof", "notfound"})
# A final solution line that only states the answer ("Answer: $\boxed{6}$").
_ANSWER_LINE = re.compile(r"^[\W_]*(final\s+)?answer\b", re.IGNORECASE)

OPENR1_STOP = ("\n\nQuestion:",)
OPENR1_FORMAT = TextFormat(
    final_answer_prefix="\nFinal answer: \\boxed{",
    final_answer_suffix="}",
    # Solutions contain blank lines, so only a new question ends a generation.
    stop_sequences=OPENR1_STOP,
    max_new_tokens=1024,
)


def gold_answer(record: Mapping[str, Any], solution: str) -> tuple[str | None, str]:
    """(gold, "") or (None, reason) for one record."""
    raw = record.get("answer")
    if isinstance(raw, float) and math.isfinite(raw):  # some re-uploads store numbers
        raw = str(int(raw)) if raw.is_integer() else repr(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    gold = raw.strip() if isinstance(raw, str) else ""
    if gold:
        boxed = last_boxed(gold)  # some sources store the whole "\boxed{...}"
        gold = boxed if boxed is not None else gold.strip("$ ")
    else:
        gold = last_boxed(solution) or ""
    if not normalize_math(gold):
        return None, "no_gold"
    if gold.lower() in NON_ANSWERS:
        return None, "non_answer"
    if not braces_balanced(gold):
        return None, "unbalanced_braces"
    return gold, ""


def strip_answer_line(solution: str) -> str:
    """The solution without a final line that only states the answer."""
    lines = solution.rstrip().splitlines()
    if not lines:
        return ""
    last = lines[-1]
    boxed = last_boxed(last)
    only_box = boxed is not None and not re.sub(r"\\boxed\s*\{.*\}|[\s$.\\\[\]()]", "", last)
    if _ANSWER_LINE.match(last) or only_box:
        lines = lines[:-1]
    return "\n".join(lines).rstrip()


@dataclass(frozen=True)
class OpenR1Task(Task):
    """OpenR1-Math from the hub or local files; ``numeric_only`` drops non-numeric golds.
    Generations are scored by math equality of their last ``\\boxed{}`` (the only
    outcome: lm-eval defines no OpenR1 task) and stop at ``stop`` (default: a new
    question, since solutions hold blank lines)."""

    hub_id: str = "open-r1/OpenR1-Math-220k"
    hub_config: str = "default"
    numeric_only: bool = False
    stop: tuple[str, ...] = OPENR1_STOP

    name: ClassVar[str] = "openr1"
    text_format: ClassVar[TextFormat] = OPENR1_FORMAT
    splits: ClassVar[tuple[str, ...]] = ("train",)
    scoring: ClassVar[str] = "boxed"

    def __post_init__(self) -> None:
        self._check_scoring_options()
        if not isinstance(self.numeric_only, bool):
            raise AblateError(
                f"openr1 option numeric_only must be true or false, got {self.numeric_only!r}"
            )

    def load_with_report(
        self, split: str, *, path: str | None = None, limit: int | None = None
    ) -> tuple[list[Item], LoadReport]:
        check_limit(limit)
        records, source = open_records(
            path, split, SCHEMA, hub_id=self.hub_id, hub_config=self.hub_config, limit=limit
        )
        items: list[Item] = []
        excluded: Counter[str] = Counter()
        n_records = 0
        for record in records:
            if limit is not None and len(items) >= limit:
                break
            n_records += 1
            item, reason = self._item(record, split, n_records - 1)
            if item is None:
                excluded[reason] += 1
            else:
                items.append(item)
        if n_records == 0 and limit != 0:
            raise AblateError(
                f"OpenR1 split '{split}' at {source} has no records; expected {SCHEMA}"
            )
        return items, LoadReport(self.name, split, source, n_records, len(items), dict(excluded))

    def _item(self, record: Record, split: str, index: int) -> tuple[Item | None, str]:
        fields = record.fields
        problem = require_string(fields, "problem", record.location, SCHEMA)
        raw_solution = fields.get("solution")
        if raw_solution is not None and not isinstance(raw_solution, str):
            raise AblateError(
                f"{record.location}: field 'solution' is {type(raw_solution).__name__}, "
                f"not a string; expected {SCHEMA}"
            )
        solution = raw_solution or ""
        gold, reason = gold_answer(fields, solution)
        if gold is None:
            return None, reason
        value = parse_math_number(gold)
        if self.numeric_only and value is None:
            return None, "non_numeric"
        uuid = fields.get("uuid")
        stripped = strip_answer_line(solution)
        return (
            Item(
                item_id=uuid if isinstance(uuid, str) and uuid else f"{split}-{index:06d}",
                question=problem,
                solution=stripped,
                answer=gold,
                answer_value=value,
                steps=(),
                depth_annotations=None,
                depth_lines=count_lines(stripped),
                doc_hash=doc_hash(
                    {"problem": problem, "solution": raw_solution, "answer": fields.get("answer")}
                ),
            ),
            "",
        )

