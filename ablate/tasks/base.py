"""What every task shares: the ``Item`` it yields, its load report, text format and base class.

A task turns a data source into ``Item``s (question, worked solution, gold answer, depth)
and knows how its text is laid out for evaluation (``TextFormat``) and how a generation
is scored (``Task.score``).

    >>> from ablate.tasks import get_task
    >>> items = get_task("synthetic").load("test", limit=3)
    >>> items[0].answer == f"{items[0].answer_value:g}"
    True
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from ablate.errors import AblateError
from ablate.tasks.extraction import GenerativeScore, scoring_rule
from ablate.tasks.outcomes import LM_EVAL_STOP, check_outcome, check_stop

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    """One evaluation problem.

    ``solution`` is the worked chain of thought without the final answer line; ``answer``
    is the gold answer as written in the source (e.g. "1,080"), ``answer_value`` its
    numeric value (None when it is not a number). ``steps`` are the ``<<expr=value>>``
    calculator annotations (CODI's gsm8k-aug convention). ``doc_hash`` identifies the
    source record so runs pair item by item.
    """

    item_id: str
    question: str
    solution: str
    answer: str
    answer_value: float | None
    steps: tuple[str, ...]
    depth_annotations: int | None
    depth_lines: int | None
    doc_hash: str


@dataclass(frozen=True)
class LoadReport:
    """What a load did: records read, items kept, and why the rest were excluded."""

    task: str
    split: str
    source: str  # a file path or "hub:<id>"
    n_records: int  # records read from the source (before exclusions and limit)
    n_items: int  # items returned
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> count

    @property
    def n_excluded(self) -> int:
        return sum(self.excluded.values())


@dataclass(frozen=True)
class TextFormat:
    """How a task's items are laid out as text (see ``ablate.tasks.prompts``).

    Teacher-forced example: prompt = question_prefix + question + answer_prefix, target =
    target_delimiter + solution + final_answer_prefix + answer + final_answer_suffix.
    ``stop_sequences`` end a generation (default: lm-eval's GSM8K ``until``); a task's
    ``stop`` option replaces them (``Task.generation_format``).
    """

    question_prefix: str = "Question: "
    answer_prefix: str = "\nAnswer:"
    target_delimiter: str = " "  # lm-evaluation-harness's target_delimiter
    final_answer_prefix: str = "\n#### "
    final_answer_suffix: str = ""
    exemplar_separator: str = "\n\n"
    stop_sequences: tuple[str, ...] = LM_EVAL_STOP
    max_new_tokens: int = 256


class Task(ABC):
    """A named source of ``Item``s with its text format and scoring rule.

    A task with the options ``outcome`` and ``stop`` (dataclass fields; see
    ``ablate.tasks.outcomes``) scores generations by that primary outcome and stops them
    at those sequences; without them, its rule's primary and its format's stops apply.
    """

    name: ClassVar[str]
    text_format: ClassVar[TextFormat]
    splits: ClassVar[tuple[str, ...]]  # the split names the default source offers
    scoring: ClassVar[str] = "gsm8k"  # its rule in ablate.tasks.extraction.SCORING_RULES

    def load(self, split: str, *, path: str | None = None, limit: int | None = None) -> list[Item]:
        """Items of ``split`` (from ``path`` if given, else the default source)."""
        items, report = self.load_with_report(split, path=path, limit=limit)
        if report.n_excluded:
            logger.warning(
                "%s[%s]: excluded %d of %d records (%s)",
                report.task,
                report.split,
                report.n_excluded,
                report.n_records,
                ", ".join(f"{k}={v}" for k, v in sorted(report.excluded.items())),
            )
        return items

    @abstractmethod
    def load_with_report(
        self, split: str, *, path: str | None = None, limit: int | None = None
    ) -> tuple[list[Item], LoadReport]:
        """Like ``load``, also returning the ``LoadReport`` (excluded items, counts)."""

    @property
    def generation_format(self) -> TextFormat:
        """The text format generation uses: ``text_format`` with the task's ``stop``."""
        stop = getattr(self, "stop", None)
        if stop is None:
            return self.text_format
        return replace(self.text_format, stop_sequences=tuple(stop))

    def score(self, generation: str, item: Item, *, rule: str | None = None) -> GenerativeScore:
        """Score a generated continuation of the prompt against the item's gold answer,
        by the task's rule with its ``outcome`` as the primary, or by ``rule`` with that
        rule's own primary (e.g. "codi", for the answer a CODI model writes after its
        cue)."""
        score = scoring_rule(rule or self.scoring)(generation, item.answer)
        outcome = getattr(self, "outcome", None)
        if (rule or self.scoring) == self.scoring and outcome is not None:
            score = replace(score, primary=outcome)
        return score

    def _check_scoring_options(self) -> None:
        """Check ``outcome`` and ``stop`` (where the task has them); ``stop`` becomes a
        tuple (a TOML list arrives as a list). For the ``__post_init__`` of tasks."""
        if hasattr(self, "outcome"):
            check_outcome(self.outcome, self.name)
        if hasattr(self, "stop"):
            object.__setattr__(self, "stop", check_stop(self.stop, self.name))


def doc_hash(record: Mapping[str, Any]) -> str:
    """First 16 hex chars of sha256 over the record's canonical JSON (sorted keys)."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise AblateError(f"limit must be a non-negative integer or None, got {limit!r}")


def require_string(record: Mapping[str, Any], key: str, location: str, schema: str) -> str:
    """``record[key]`` as a string, or an error naming the location and the schema."""
    if key not in record:
        raise AblateError(f"{location}: missing field '{key}'; expected {schema}")
    value = record[key]
    if not isinstance(value, str):
        raise AblateError(
            f"{location}: field '{key}' is {type(value).__name__}, not a string; expected {schema}"
        )
    return value
