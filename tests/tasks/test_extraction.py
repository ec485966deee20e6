"""Tests for ablate.tasks.extraction on hand-written generations."""

from __future__ import annotations

import pytest

from ablate.tasks.extraction import (
    extract_codi,
    flexible_extract,
    last_boxed,
    math_equal,
    normalize_gsm8k,
    parse_math_number,
    parse_number,
    score_boxed,
    score_codi,
    score_gsm8k,
    strict_match,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5+2=7\n#### 7", "7"),
        ("#### 5\n#### 6", "5"),  # the first match wins
        ("#### -1,234.5 dollars", "-1,234.5"),
        ("####7", None),  # a space after #### is required
        ("The answer is 7.", None),
    ],
)
def test_strict_match_takes_the_first_hash_answer(text: str, expected: str | None) -> None:
    assert strict_match(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I had 12 apples and ate 3", "3"),  # the last match wins
        ("it costs $1,000.", "$1,000."),  # first group: two or more of [$0-9.,]
        ("x is 7", "7"),  # a single digit only matches the second group
        ("minus -4 and -12", "-12"),
        ("no digits here", None),
    ],
)
def test_flexible_extract_takes_the_last_number(text: str, expected: str | None) -> None:
    assert flexible_extract(text) == expected


def test_normalisation_drops_commas_dollars_trailing_dot_and_solution() -> None:
    assert normalize_gsm8k("$1,000.") == "1000"
    assert normalize_gsm8k("She makes 9*2 = 18\n#### 18") == "18"
    assert normalize_gsm8k(" 3.5 ") == "3.5"


def test_strict_exact_match_and_numeric_agree_on_clean_answers() -> None:
    score = score_gsm8k("9*2=<<9*2=18>>18\n#### 18", "18")
    assert (score.correct_strict, score.correct_flexible, score.correct_numeric) == (
        True,
        True,
        True,
    )
    assert not score.invalid


def test_commas_in_gold_and_prediction_are_ignored() -> None:
    assert score_gsm8k("#### 1080", "1,080").correct_strict
    assert score_gsm8k("#### 1,080", "1080").correct_numeric


def test_numeric_equality_accepts_what_string_match_rejects() -> None:
    score = score_gsm8k("#### 18.0", "18")
    assert not score.correct_strict
    assert score.correct_numeric


def test_flexible_can_be_right_when_strict_is_invalid() -> None:
    score = score_gsm8k("so she makes 18 dollars", "18")
    assert score.invalid
    assert (score.correct_strict, score.correct_flexible, score.correct_numeric) == (
        False,
        True,
        False,
    )


def test_invalid_count_is_the_number_of_generations_without_a_hash_answer() -> None:
    generations = ["#### 4", "the answer is 4", "", "#### four", "x\n#### -4"]
    scores = [score_gsm8k(g, "4") for g in generations]
    assert sum(s.invalid for s in scores) == 3
    assert [s.correct_numeric for s in scores] == [True, False, False, False, False]


def test_parse_number() -> None:
    assert parse_number("1,234.") == 1234.0
    assert parse_number("$-3.5") == -3.5
    assert parse_number(".5") == 0.5
    assert parse_number("1.2.3") is None
    assert parse_number("nan") is None
    assert parse_number(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{\frac{1}{2}}$ and finally \boxed{x^{2}+1}.", "x^{2}+1"),
        (r"\boxed{3} then \boxed{4", "3"),  # an unbalanced last box falls back
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are not groups
        (r"\boxed {7}", "7"),
        ("no box", None),
    ],
)
def test_last_boxed_handles_nested_and_unbalanced_braces(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12", 12.0),
        (r"\frac{1}{2}", 0.5),
        (r"-\dfrac{3}{4}", -0.75),
        (r"\frac12", 0.5),
        ("3/4", 0.75),
        (r"50\%", 50.0),
        ("1,000", 1000.0),
        ("$12$.", 12.0),
        (r"90^\circ", 90.0),
        (r"\left(1,2\right)", None),
        ("x+1", None),
        ("1/0", None),
    ],
)
def test_parse_math_number(text: str, expected: float | None) -> None:
    assert parse_math_number(text) == expected


def test_math_equal_is_numeric_when_both_parse_else_normalised_text() -> None:
    assert math_equal("0.5", r"\frac{1}{2}")
    assert math_equal(r"\left( 1, 2 \right)", "(1,2)")
    assert not math_equal("3", "4")
    assert not math_equal("(1,3)", "(1,2)")
    assert not math_equal(None, "1")


def test_boxed_scoring_counts_missing_box_as_invalid() -> None:
    good = score_boxed(r"thus \boxed{0.50}", r"\frac{1}{2}")
    assert good.correct_numeric and good.correct_flexible and not good.invalid
    assert not good.correct_strict  # strict is text equality
    unboxed = score_boxed("the answer is 0.5", r"\frac{1}{2}")
    assert unboxed.invalid and not unboxed.correct_numeric
    assert unboxed.correct_flexible  # falls back to the last number


def test_codi_takes_the_first_number_after_the_cue() -> None:
    assert extract_codi("<eot> The answer is: 1,234. Then 5") == "1234"
    assert extract_codi(" 18 apples") == "18"  # the continuation alone, no cue
    assert extract_codi("The answer is: none") is None
    assert score_codi(" 18.00001", "18").correct_numeric  # within 1e-4
    assert not score_codi(" 18.001", "18").correct_numeric
    assert score_codi("The answer is: , 5", "5").invalid  # "," is the first match
