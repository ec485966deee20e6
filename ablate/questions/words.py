"""The words every question's prose and tables share: number formats, the group a result
belongs to, verdicts, and the paragraph that states one claim with both intervals, each
named by the claim it supports:

- E1: for these checkpoints (problems random, seeds fixed);
- E3: for a new training run on problems like these (seeds and problems random).

    >>> number(-8.123, signed=True), pair([0.5, 1.25])
    ('-8.12', '[0.500, 1.25]')
    >>> blocks = claim_blocks(claim, level=0.95, lead="Accuracy falls ...")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ablate.questions.blocks import Block, Bullets, Paragraph
from ablate.stats.claims import VERDICTS

E1_WORDS = "for these checkpoints (problems random, seeds fixed)"
E3_WORDS = "for a new training run on problems like these (seeds and problems random)"
OUTCOME_WORDS = {"correct": "accuracy", "answer_loglik": "answer log-likelihood",
                 "bits_per_byte": "bits per byte"}
VERDICT_MEANING = {
    "across_seeds": "expected to hold for a new training run on problems like these",
    "these_checkpoints_only": "it holds for these checkpoints, but another training run may "
                              "not show it",
    "not_significant": "not shown to differ from zero, which is not evidence of no effect",
    "one_seed_these_checkpoints": "it holds for this checkpoint; one seed says nothing about "
                                  "other training runs",
    "one_seed_not_significant": "not shown for this checkpoint; one seed says nothing about "
                                "other training runs",
}
SHORT_VERDICTS = {"across_seeds": "across seeds",
                  "these_checkpoints_only": "these checkpoints only",
                  "not_significant": "not significant",
                  "one_seed_these_checkpoints": "one seed: this checkpoint only",
                  "one_seed_not_significant": "one seed: not significant"}
CLAIM_COLUMNS = ("estimate", "E1 interval", "Holm p E1", "E3 interval", "Holm p E3", "verdict")


def number(value: Any, *, signed: bool = False) -> str:
    """A number with about three significant digits; "n/a" for null."""
    if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
        return "n/a"
    x = float(value)
    sign = "+" if signed and x > 0 else ""
    size = abs(x)
    if size == 0:
        return "0"
    if size >= 1000:
        return f"{sign}{x:,.0f}"
    if size >= 10:
        return f"{sign}{x:.1f}"
    if size >= 1:
        return f"{sign}{x:.2f}"
    if size >= 0.01:
        return f"{sign}{x:.3f}"
    return f"{sign}{x:.2e}"


def p_value(value: Any) -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def pair(values: Sequence[Any] | None) -> str:
    """"[low, high]" or "n/a"."""
    if not values or any(v is None for v in values):
        return "n/a"
    return f"[{number(values[0])}, {number(values[1])}]"


def pct(level: float) -> str:
    return f"{level:.0%}"


def head_scope(entry: Mapping[str, Any], *, site: bool = True) -> str:
    """"multiprobe, gsm8k teacher_forced T=8 at head_input, svd_rank_k": the group, the
    site, and the intervention (and its control) where the entry names them."""
    text = (f"{entry['config_label']}, {entry['task']} {entry['mode']} "
            f"T={entry['n_iterations']}")
    text += f" at {entry['site']}" if site and entry.get("site") else ""
    if entry.get("intervention"):
        text += f", {entry['intervention']}" + (f" vs {entry['control']}"
                                                if entry.get("control") else "")
    return text


def outcome_words(outcome: str) -> str:
    return OUTCOME_WORDS.get(outcome, outcome)


def verdict_text(key: str | None) -> str:
    return VERDICTS.get(key or "", key or "n/a")


def short_verdict(key: str | None) -> str:
    return SHORT_VERDICTS.get(key or "", key or "n/a")


def claim_cells(claim: Mapping[str, Any]) -> tuple[str, ...]:
    """The CLAIM_COLUMNS cells of one claim."""
    return (number(claim.get("estimate"), signed=True), pair(claim.get("e1")),
            p_value(claim.get("p_holm_e1")), pair(claim.get("e3")),
            p_value(claim.get("p_holm_e3")), short_verdict(claim.get("verdict")))


def valid(values: Sequence[Any] | None) -> bool:
    return bool(values) and all(v is not None for v in values)


def interval_words(claim: Mapping[str, Any]) -> str:
    """"E3 [lo, hi]", or the E1 interval when E3 is not computed (summary lines)."""
    if valid(claim.get("e3")):
        return f"E3 {pair(claim['e3'])}"
    return f"E1 {pair(claim.get('e1'))}; E3 not computed"


def per_seed_text(values: Sequence[Any], seeds: Sequence[Any] | None = None) -> str:
    if not values:
        return ""
    if seeds and len(seeds) == len(values):
        listed = ", ".join(f"seed {s}: {number(v, signed=True)}"
                           for s, v in zip(seeds, values, strict=True))
    else:
        listed = ", ".join(number(v, signed=True) for v in values)
    return f"Per seed: {listed}."


def claim_blocks(claim: Mapping[str, Any], *, level: float, lead: str,
                 seeds: Sequence[Any] | None = None, per_seed: bool = True,
                 e3_method: str = "two-way seeds x problems interval",
                 extra: Sequence[str] = ()) -> list[Block]:
    """The lead sentence with the verdict in words, then one line each for E1 and E3
    (interval, p, Holm-adjusted p, method), the per-seed values and any ``extra`` lines."""
    unit = claim.get("unit", "")
    verdict = claim.get("verdict")
    meaning = VERDICT_MEANING.get(verdict or "", "")
    lines = []
    if valid(claim.get("e1")):
        lines.append(f"E1, {E1_WORDS}: {pct(level)} interval {pair(claim['e1'])} {unit}, "
                     f"p = {p_value(claim.get('p_e1'))}, Holm-adjusted "
                     f"p = {p_value(claim.get('p_holm_e1'))} ({claim.get('e1_method')}).")
    else:
        lines.append(f"E1, {E1_WORDS}: not computed ({claim.get('e1_method') or 'no data'}).")
    if valid(claim.get("e3")):
        lines.append(f"E3, {E3_WORDS}: {pct(level)} interval {pair(claim['e3'])} {unit}, "
                     f"p = {p_value(claim.get('p_e3'))}, Holm-adjusted "
                     f"p = {p_value(claim.get('p_holm_e3'))} ({e3_method}, "
                     f"{number(claim.get('df_e3'))} df).")
    else:
        reason = "; ".join(claim.get("notes") or []) or "not available"
        lines.append(f"E3, {E3_WORDS}: not computed ({reason}).")
    if per_seed and claim.get("per_seed"):
        lines.append(per_seed_text(claim["per_seed"], seeds))
    lines += [line for line in extra if line]
    verdict_words = f"Verdict: **{verdict_text(verdict)}**" + (f": {meaning}." if meaning
                                                                 else ".")
    return [Paragraph(f"{lead} {verdict_words}"), Bullets(tuple(lines))]


def note_blocks(entry: Mapping[str, Any]) -> list[Block]:
    return [Paragraph(f"Note: {note}.") for note in entry.get("notes", [])]


def change_text(estimate: Any, unit: str, *, signed: bool = True) -> str:
    """"falls by 8.1 pp (estimate -8.1)" from a signed estimate; the estimate is repeated
    with its sign because the intervals that follow are signed."""
    if estimate is None:
        return "has no estimate"
    direction = "falls" if estimate < 0 else "rises" if estimate > 0 else "does not change"
    size = "" if estimate == 0 else f" by {number(abs(estimate))} {unit}"
    return f"{direction}{size}" + (f" (estimate {number(estimate, signed=True)})"
                                   if signed else "")


FIGURE_REF = re.compile(r"\[\[figure:([\w-]+)\]\]")


def figure_ref(name: str) -> str:
    """A reference to the question's figure ``name`` in its prose; the report replaces it
    with the figure's number when it assembles the sections."""
    return f"[[figure:{name}]]"
