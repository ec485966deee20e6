"""GSM8K: grade-school word problems whose answers end in ``#### <number>``.

Reads ``openai/gsm8k`` (config "main") from the hub, or local files in the same schema
({"question": str, "answer": str}). The answer field is split into the worked solution
(before ``####``) and the gold answer (after it). Depth is counted two ways (spec §9):
calculator annotations ``<<expr=value>>`` and non-empty solution lines.

    >>> items = GSM8KTask().load("test", path="/work/shared/data/gsm8k", limit=5)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
from ablate.tasks.extraction import parse_number
from ablate.tasks.outcomes import DEFAULT_OUTCOME, LM_EVAL_STOP
from ablate.tasks.records import open_records

SCHEMA = "GSM8K schema {'question': str, 'answer': str ending in '#### <number>'}"
# Spec §9: non-overlapping "<<...=...>>" with no ">" inside.
ANNOTATION = re.compile(r"<<[^>]*=[^>]*>>")
# Spec §9: the gold answer is the first [-\d.,]+ after ####, commas removed.
GOLD_NUMBER = re.compile(r"[-\d.,]+")
ANSWER_MARKER = "####"


def count_annotations(solution: str) -> int:
    """Number of calculator annotations ``<<expr=value>>`` (non-overlapping)."""
    return len(ANNOTATION.findall(solution))


def count_lines(solution: str) -> int:
    """Number of non-empty solution lines (the text before ``####``)."""
    return sum(1 for line in solution.splitlines() if line.strip())


def split_answer(answer: str, location: str) -> tuple[str, str, float]:
    """(solution, gold as written, gold value) of a GSM8K answer field."""
    if ANSWER_MARKER not in answer:
        raise AblateError(
            f"{location}: answer has no '{ANSWER_MARKER} <number>' line; expected {SCHEMA}"
        )
    solution, _, tail = answer.rpartition(ANSWER_MARKER)
    gold = tail.strip()
    match = GOLD_NUMBER.search(gold)
    value = parse_number(match.group()) if match else None
    if value is None:
        raise AblateError(
            f"{location}: no number after '{ANSWER_MARKER}' (got {gold!r}); expected {SCHEMA}"
        )
    return solution.rstrip(), gold, value


def item_from_record(record: Mapping[str, Any], location: str, item_id: str) -> Item:
    """A validated ``Item`` from one GSM8K-schema record."""
    question = require_string(record, "question", location, SCHEMA)
    answer = require_string(record, "answer", location, SCHEMA)
    solution, gold, value = split_answer(answer, location)
    return Item(
        item_id=item_id,
        question=question,
        solution=solution,
        answer=gold,
        answer_value=value,
        steps=tuple(ANNOTATION.findall(solution)),
        depth_annotations=count_annotations(solution),
        depth_lines=count_lines(solution),
        # Only the schema fields are hashed, so extra columns and file format do not matter.
        doc_hash=doc_hash({"question": question, "answer": answer}),
    )


def gsm8k_record(item: Item) -> dict[str, str]:
    """The GSM8K-schema record of an item (inverse of ``item_from_record``)."""
    return {"question": item.question, "answer": f"{item.solution}\n{ANSWER_MARKER} {item.answer}"}


def write_gsm8k_jsonl(items: Iterable[Item], path: str | Path) -> int:
    """Write items as GSM8K-format JSON lines (readable by this task); returns the count."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with target.open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(json.dumps(gsm8k_record(item), ensure_ascii=False) + "\n")
            count += 1
    return count


@dataclass(frozen=True)
class GSM8KTask(Task):
    """GSM8K from the hub (``hub_id``/``hub_config``) or a local file/directory.

    ``outcome`` is the primary outcome of a generation (default lm-eval's strict exact
    match) and ``stop`` its stop sequences (default lm-eval's): ``ablate.tasks.outcomes``.
    """

    hub_id: str = "openai/gsm8k"
    hub_config: str = "main"
    outcome: str = DEFAULT_OUTCOME
    stop: tuple[str, ...] = LM_EVAL_STOP

    name: ClassVar[str] = "gsm8k"
    text_format: ClassVar[TextFormat] = TextFormat()  # lm-eval's default max_gen_toks, 256
    splits: ClassVar[tuple[str, ...]] = ("train", "test")

    def __post_init__(self) -> None:
        self._check_scoring_options()

    def load_with_report(
        self, split: str, *, path: str | None = None, limit: int | None = None
    ) -> tuple[list[Item], LoadReport]:
        check_limit(limit)
        records, source = open_records(
            path, split, SCHEMA, hub_id=self.hub_id, hub_config=self.hub_config, limit=limit
        )
        items: list[Item] = []
        n_records = 0
        for record in records:
            if limit is not None and len(items) >= limit:
                break
            n_records += 1
            items.append(
                item_from_record(record.fields, record.location, f"{split}-{n_records - 1:05d}")
            )
        if n_records == 0 and limit != 0:
            raise AblateError(
                f"GSM8K split '{split}' at {source} has no records; expected {SCHEMA}"
            )
        return items, LoadReport(self.name, split, source, n_records, len(items))

