"""Answer extraction and scoring for generated text: GSM8K (lm-eval filters), boxed, CODI.

Scoring rules by name (``SCORING_RULES``; a task scores with its own rule or a named one,
``Task.score``), each returning a ``GenerativeScore``:

* "gsm8k" (GSM8K / synthetic): lm-evaluation-harness's ``strict-match`` and
  ``flexible-extract`` filters, exact match after its normalisation, plus numeric equality
  (1e-4); the primary outcome is strict unless the task's ``outcome`` option names another
  (``ablate.tasks.outcomes``).
* "boxed" (OpenR1-Math): the last ``\\boxed{...}``, compared numerically when both sides
  parse as numbers (integers, decimals, ``\\frac{a}{b}``, ``a/b``, percent sign dropped),
  else as normalised LaTeX text.
* "codi" (a CODI model's answer after its cue): CODI's rule, the first number after the
  answer cue within 1e-4, decides ``correct_numeric`` (the primary) and ``invalid``; strict
  and flexible report the lm-eval filters on the same text, for comparison.

    >>> score_gsm8k("3+4=<<3+4=7>>7\\n#### 7", "7").correct_strict
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from ablate.errors import unknown_name_error
from ablate.tasks.outcomes import OUTCOMES

# Pinned to lm-evaluation-harness lm_eval/tasks/gsm8k/gsm8k.yaml (task version 3.0, commit
# 47f16bf6a68ec19467e728ce52ac6c5937d5b3da) and the documented behaviour of its "regex"
# filter: all matches are found, `group_select` picks one (0 = first, -1 = last), a match
# with several groups yields its first non-empty group, the result is stripped, and no
# match gives the fallback "[invalid]"; `take_first` then keeps the first response.
STRICT_MATCH = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_EXTRACT = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
# The exact_match metric's regexes_to_ignore, removed in this order from prediction and
# reference (with ignore_case: true) before comparing strings.
GSM8K_IGNORE = (re.compile(","), re.compile(r"\$"), re.compile(r"(?s).*#### "), re.compile(r"\.$"))
INVALID = "[invalid]"

# CODI (spec section 9): the prediction is the first `[-\d.,]+` after the cue.
CODI_CUE = "The answer is:"
CODI_NUMBER = re.compile(r"[-\d.,]+")
NUMERIC_TOLERANCE = 1e-4

_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d*)?|-?\.\d+")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER = r"-?\d+(?:\.\d+)?"
_LATEX_FRAC = re.compile(rf"(-?)\\frac\{{({_NUMBER})\}}\{{({_NUMBER})\}}")
_LATEX_FRAC_SHORT = re.compile(r"(-?)\\frac(\d)(\d)")  # \frac12
_SLASH_FRAC = re.compile(rf"({_NUMBER})/({_NUMBER})")
# LaTeX spacing and sizing commands that never change an answer's meaning.
_MATH_NOISE = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "$")


@dataclass(frozen=True)
class GenerativeScore:
    """One generation scored against its gold answer.

    ``primary`` names the outcome that is the record's ``correct`` ("strict", "flexible"
    or "numeric": ``correct_<primary>``). ``invalid`` means the rule's own extraction
    found nothing (GSM8K: no ``#### <number>``, whatever the primary outcome); such
    generations are never correct under ``correct_strict`` or ``correct_numeric``.
    """

    extracted_strict: str | None
    extracted_flexible: str | None
    correct_strict: bool
    correct_flexible: bool
    correct_numeric: bool
    invalid: bool
    primary: str = "strict"

    def __post_init__(self) -> None:
        if self.primary not in OUTCOMES:
            raise unknown_name_error("outcome", self.primary, OUTCOMES)

    @property
    def correct(self) -> bool:
        """The primary outcome."""
        return bool(getattr(self, OUTCOMES[self.primary][0]))


# --- GSM8K ---------------------------------------------------------------------------


def strict_match(text: str) -> str | None:
    """lm-eval ``strict-match``: the first ``#### <number>``, or None (lm-eval's "[invalid]")."""
    matches = STRICT_MATCH.findall(text)
    return matches[0].strip() if matches else None


def flexible_extract(text: str) -> str | None:
    """lm-eval ``flexible-extract``: the last number-like run, or None."""
    matches = FLEXIBLE_EXTRACT.findall(text)
    if not matches:
        return None
    groups = matches[-1]
    return next(g for g in groups if g).strip()


def normalize_gsm8k(text: str) -> str:
    """lm-eval's GSM8K exact-match normalisation (ignore regexes, then lower case)."""
    text = text.strip()
    for pattern in GSM8K_IGNORE:
        text = pattern.sub("", text)
    return text.lower()


def parse_number(text: str | None) -> float | None:
    """A plain decimal number after removing commas, ``$`` and one trailing ``.``."""
    if text is None:
        return None
    cleaned = re.sub(r"\.$", "", text.strip().replace(",", "").replace("$", ""))
    if not _PLAIN_NUMBER.fullmatch(cleaned):
        return None
    return float(cleaned)


def numbers_equal(a: float | None, b: float | None, tolerance: float = NUMERIC_TOLERANCE) -> bool:
    return a is not None and b is not None and abs(a - b) < tolerance


def score_gsm8k(generation: str, gold: str) -> GenerativeScore:
    """Score a GSM8K-format generation; ``gold`` is the answer string (or a full answer).

    The primary outcome is lm-eval's strict exact match; ``correct_numeric`` compares the
    strict extraction numerically, so "7.0" equals "7" there only.
    """
    strict = strict_match(generation)
    flexible = flexible_extract(generation)
    gold_normalized = normalize_gsm8k(gold)
    gold_value = parse_number(gold_normalized)
    return GenerativeScore(
        extracted_strict=strict,
        extracted_flexible=flexible,
        correct_strict=strict is not None and normalize_gsm8k(strict) == gold_normalized,
        correct_flexible=flexible is not None and normalize_gsm8k(flexible) == gold_normalized,
        correct_numeric=numbers_equal(parse_number(strict), gold_value),
        invalid=strict is None,
    )


# --- boxed (OpenR1-Math) -------------------------------------------------------------


def last_boxed(text: str) -> str | None:
    """Contents of the last ``\\boxed{...}`` with balanced braces (``\\{``, ``\\}`` skipped)."""
    end = len(text)
    while True:
        start = text.rfind("\\boxed", 0, end)
        if start < 0:
            return None
        position = start + len("\\boxed")
        while position < len(text) and text[position] == " ":
            position += 1
        if position < len(text) and text[position] == "{":
            content = _braced(text, position)
            if content is not None:
                return content.strip()
        end = start


def _braced(text: str, open_index: int) -> str | None:
    """Text between ``text[open_index] == "{"`` and its matching brace, or None."""
    depth = 0
    index = open_index
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2  # an escaped character, e.g. \{ in a set, is not a group brace
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
        index += 1
    return None


def braces_balanced(text: str) -> bool:
    """Whether every unescaped ``{`` in ``text`` has its ``}``."""
    return _braced("{" + text + "}", 0) == text


def normalize_math(text: str) -> str:
    """Answer text without spaces, ``$``, ``\\left``/``\\right``, thin spaces or final ``.``."""
    for noise in _MATH_NOISE:
        text = text.replace(noise, "")
    text = re.sub(r"\s+", "", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",")
    return re.sub(r"\.$", "", text)


def parse_math_number(text: str | None) -> float | None:
    """Numeric value of a simple math answer (``12``, ``-3.5``, ``1,000``, ``\\frac{1}{2}``,
    ``3/4``, ``50\\%``), or None for anything else (expressions, tuples, intervals)."""
    if text is None:
        return None
    s = normalize_math(text)
    s = re.sub(r"(\\%|%|\^\{?\\circ\}?)$", "", s)  # percent and degree signs are units
    if _PLAIN_NUMBER.fullmatch(s):
        return float(s)
    if _THOUSANDS.fullmatch(s):
        return float(s.replace(",", ""))
    for pattern in (_LATEX_FRAC, _LATEX_FRAC_SHORT):
        match = pattern.fullmatch(s)
        if match:
            sign, numerator, denominator = match.groups()
            return _divide(float(numerator), float(denominator), negative=sign == "-")
    match = _SLASH_FRAC.fullmatch(s)
    if match:
        return _divide(float(match.group(1)), float(match.group(2)), negative=False)
    return None


def _divide(numerator: float, denominator: float, *, negative: bool) -> float | None:
    if denominator == 0:
        return None
    value = numerator / denominator
    return -value if negative else value


def math_equal(prediction: str | None, gold: str) -> bool:
    """Numeric equality (1e-4) when both parse as numbers, else normalised text equality."""
    if prediction is None:
        return False
    predicted_value, gold_value = parse_math_number(prediction), parse_math_number(gold)
    if predicted_value is not None and gold_value is not None:
        return numbers_equal(predicted_value, gold_value)
    return normalize_math(prediction) == normalize_math(gold)


def score_boxed(generation: str, gold: str) -> GenerativeScore:
    """Score by the last ``\\boxed{}``; the flexible variant falls back to the last number."""
    boxed = last_boxed(generation)
    flexible = boxed if boxed is not None else flexible_extract(generation)
    return GenerativeScore(
        extracted_strict=boxed,
        extracted_flexible=flexible,
        correct_strict=boxed is not None and normalize_math(boxed) == normalize_math(gold),
        correct_flexible=math_equal(flexible, gold),
        correct_numeric=math_equal(boxed, gold),
        invalid=boxed is None,
        primary="numeric",  # math equality of the box: OpenR1's only outcome
    )


# --- CODI ----------------------------------------------------------------------------


def extract_codi(text: str, cue: str = CODI_CUE) -> str | None:
    """First ``[-\\d.,]+`` after the first ``cue`` (or in the whole text if the cue is
    absent, as when only the continuation is passed), commas and a trailing ``.`` removed."""
    _, found, after = text.partition(cue)
    match = CODI_NUMBER.search(after if found else text)
    if match is None:
        return None
    return re.sub(r"\.$", "", match.group().replace(",", ""))


def score_codi(generation: str, gold: str, cue: str = CODI_CUE) -> GenerativeScore:
    """CODI's rule: correct iff the first number after the cue is within 1e-4 of gold.

    CODI has one extraction, so strict and flexible both report its string equality.
    """
    predicted = extract_codi(generation, cue)
    gold_clean = re.sub(r"\.$", "", gold.strip().replace(",", ""))
    same_text = predicted is not None and predicted == gold_clean
    return GenerativeScore(
        extracted_strict=predicted,
        extracted_flexible=predicted,
        correct_strict=same_text,
        correct_flexible=same_text,
        correct_numeric=numbers_equal(parse_number(predicted), parse_number(gold_clean)),
        invalid=parse_number(predicted) is None,
        primary="numeric",
    )


def codi_gold(answer: str) -> str:
    """The gold answer as CODI writes it: commas removed, a trailing "." stripped."""
    return re.sub(r"\.$", "", answer.strip().replace(",", ""))


def score_codi_answer(generation: str, gold: str) -> GenerativeScore:
    """The "codi" rule: ``correct_numeric`` and ``invalid`` by CODI's rule, strict and
    flexible by lm-eval's GSM8K filters, both against the gold answer as CODI writes it."""
    gold = codi_gold(gold)
    codi, lm_eval = score_codi(generation, gold), score_gsm8k(generation, gold)
    return GenerativeScore(
        extracted_strict=lm_eval.extracted_strict,
        extracted_flexible=lm_eval.extracted_flexible,
        correct_strict=lm_eval.correct_strict,
        correct_flexible=lm_eval.correct_flexible,
        correct_numeric=codi.correct_numeric,
        invalid=codi.invalid,
        primary="numeric",  # CODI's rule
    )


# Rule name -> score(generation, gold answer as the task states it).
SCORING_RULES: dict[str, Callable[[str, str], GenerativeScore]] = {
    "gsm8k": score_gsm8k, "boxed": score_boxed, "codi": score_codi_answer}


def scoring_rule(name: str) -> Callable[[str, str], GenerativeScore]:
    """The rule registered as ``name`` (``SCORING_RULES``)."""
    if name not in SCORING_RULES:
        raise unknown_name_error("scoring rule", name, SCORING_RULES)
    return SCORING_RULES[name]
