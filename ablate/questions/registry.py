"""The registry of research questions, in report order. ``ablate.questions`` registers the
built-in ones; a new question is one module and one line:

    >>> register_question(MyQuestion())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ablate.questions.base import Question

QUESTIONS: list[Question] = []


def register_question(question: Question, *, before: str | None = None) -> Question:
    """Add ``question`` at the end of the registry (or before the question ``before``):
    the analysis calls it in this order, and the report shows it in this order."""
    keys = {q.key for q in QUESTIONS}
    outputs = {output for q in QUESTIONS for output in q.outputs}
    if question.key in keys or outputs & set(question.outputs):
        raise ValueError(f"question {question.key!r} or one of its outputs "
                         f"{list(question.outputs)} is registered already")
    index = len(QUESTIONS) if before is None else [q.key for q in QUESTIONS].index(before)
    QUESTIONS.insert(index, question)
    return question


def unregister_question(key: str) -> Question:
    """Remove a registered question (for tests and plugins)."""
    index = [q.key for q in QUESTIONS].index(key)
    return QUESTIONS.pop(index)


def get_question(key: str) -> Question:
    for question in QUESTIONS:
        if question.key == key:
            return question
    from ablate.errors import unknown_name_error

    raise unknown_name_error("question", key, [q.key for q in QUESTIONS])
