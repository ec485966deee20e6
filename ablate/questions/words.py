"""The words every question's prose and tables share: number formats, the group a result
belongs to, verdicts, and the paragraph that states one claim with both intervals, each
named by the claim it supports:

- E1: for these checkpoints (problems random, seeds fixed);
- E3: for a new training run on problems like these (seeds and problems random).

Every p-value is written by ``p_value`` (table cells) or ``p_words`` (prose), which write a
bootstrap p at its floor as a bound and flag one too imprecise to report
(``ablate.stats.pvalues``). A claim that is a check (an identity, or zero up to rounding)
is written as its check, never with an estimate made of rounding noise.

    >>> number(-8.123, signed=True), pair([0.5, 1.25])
    ('-8.12', '[0.500, 1.25]')
    >>> p_value(2 / 2001, n_boot=2000), p_words(0.004, n_boot=2000)[0]
    ('< 0.001 ‡', 'p = 0.004')
    >>> blocks = claim_blocks(claim, level=0.95, lead="Accuracy falls ...")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ablate.questions.blocks import Block, Bullets, Paragraph, TableView
from ablate.stats.claims import CHECK_VERDICTS, ROUNDING_TOLERANCE, VERDICTS, p_resolution
from ablate.stats.pvalues import PResolution, caveat, format_p, p_statement, resolve_p

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
    "these_checkpoints_e3_not_computed": "it holds for these checkpoints; whether another "
                                         "training run would show it was not assessed",
    "not_significant_e3_not_computed": "not shown for these checkpoints, which is not "
                                       "evidence of no effect; E3 was not assessed",
    "not_significant_e1_not_computed": "not shown to differ from zero across seeds, which is "
                                       "not evidence of no effect",
    "not_tested": "no interval could be computed",
}
SHORT_VERDICTS = {"across_seeds": "across seeds",
                  "these_checkpoints_only": "these checkpoints only",
                  "not_significant": "not significant",
                  "these_checkpoints_e3_not_computed": "these checkpoints (E3 n/a)",
                  "not_significant_e3_not_computed": "not significant (E1; E3 n/a)",
                  "not_significant_e1_not_computed": "not significant (E3; E1 n/a)",
                  "not_tested": "not tested",
                  "one_seed_these_checkpoints": "one seed: this checkpoint only",
                  "one_seed_not_significant": "one seed: not significant",
                  "identity_check_passed": "identity check passed",
                  "identity_check_failed": "IDENTITY CHECK FAILED",
                  "zero_up_to_rounding": "no difference (check)"}
# Marks of table cells whose bootstrap p is a bound or imprecise; ``footnoted`` explains them.
FLOOR_MARK, COARSE_MARK = "‡", "†"
NO_VALUE = "—"  # a cell a check leaves empty (no estimate, interval or p)
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


def p_value(value: Any, *, n_boot: int | None = None, one_sided: bool = False,
            raw: Any = None) -> str:
    """A p-value for a table cell: "0.030"; for a bootstrap p (``n_boot`` given; ``raw``:
    the unadjusted p behind a Holm-adjusted one) "< 0.001 ‡" at its floor and "0.004 †"
    when too imprecise to report (``footnoted`` adds the table's footnote)."""
    return p_cell(resolve_p(value, n_boot=n_boot, one_sided=one_sided, raw=raw))


def p_cell(resolution: PResolution) -> str:
    if resolution.kind == "floor":
        return f"< {format_p(resolution.bound)} {FLOOR_MARK}"
    if resolution.kind == "small":
        return f"< {format_p(resolution.bound)}"
    if resolution.kind == "coarse":
        return f"{format_p(resolution.value)} {COARSE_MARK}"
    return format_p(resolution.value)


def p_words(value: Any, *, name: str = "p", n_boot: int | None = None,
            one_sided: bool = False, raw: Any = None) -> tuple[str, str]:
    """("p = 0.030", "") for prose, or ("p < 0.001", why it is a bound) for a bootstrap p
    at its floor, or ("p = 0.004", why it is imprecise); the caller puts the caveat beside
    the statement."""
    resolution = resolve_p(value, n_boot=n_boot, one_sided=one_sided, raw=raw)
    return p_statement(resolution, name), caveat(resolution)


def p_inline(value: Any, *, name: str = "p", n_boot: int | None = None,
             one_sided: bool = False) -> str:
    """"p = 0.030", or the statement with its caveat in parentheses."""
    statement, why = p_words(value, name=name, n_boot=n_boot, one_sided=one_sided)
    return f"{statement} ({why})" if why else statement


def claim_p(claim: Mapping[str, Any], key: str) -> PResolution:
    """The resolution of a claim's p ("p_e1", "p_holm_e1", "p_e3", "p_holm_e3")."""
    return p_resolution(claim, key)


def footnoted(view: TableView) -> TableView:
    """The view with a footnote for each p mark its cells use (bootstrap p-values written as
    a bound or flagged as imprecise)."""
    cells = [cell for row in view.rows for cell in row]
    notes = list(view.notes)
    if any(cell.endswith(FLOOR_MARK) for cell in cells):
        notes.append(f"{FLOOR_MARK} bootstrap p at its floor: no bootstrap replicate crossed "
                     "zero, so p is only known to be below the bound shown (2/B two-sided, 1/B "
                     "one-sided, times the Holm factor when adjusted; B = bootstrap replicates).")
    if any(cell.endswith(COARSE_MARK) for cell in cells):
        notes.append(f"{COARSE_MARK} bootstrap p below 0.01 from fewer than 10,000 replicates: "
                     "imprecise; rerun with n_boot >= 10,000 to report it.")
    return TableView(view.key, view.title, view.columns, view.rows, tuple(notes))


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


def is_check(claim: Mapping[str, Any]) -> bool:
    """Whether the claim is a check (identity, or zero up to rounding), not a test."""
    return claim.get("verdict") in CHECK_VERDICTS


def shows_estimate(claim: Mapping[str, Any]) -> bool:
    """Whether the claim's numbers may be shown: tests, and failed identity checks (whose
    difference is real); a passed check's numbers are rounding noise."""
    return not is_check(claim) or claim.get("verdict") == "identity_check_failed"


def short_verdict(key: str | None) -> str:
    return SHORT_VERDICTS.get(key or "", key or "n/a")


def claim_cells(claim: Mapping[str, Any]) -> tuple[str, ...]:
    """The CLAIM_COLUMNS cells of one claim (a check: no numbers unless it failed, no p)."""
    if is_check(claim):
        shown = shows_estimate(claim)
        return (number(claim.get("estimate"), signed=True) if shown else NO_VALUE,
                pair(claim.get("e1")) if shown else NO_VALUE, NO_VALUE,
                pair(claim.get("e3")) if shown else NO_VALUE, NO_VALUE,
                short_verdict(claim.get("verdict")))
    return (number(claim.get("estimate"), signed=True), pair(claim.get("e1")),
            p_cell(claim_p(claim, "p_holm_e1")), pair(claim.get("e3")),
            p_cell(claim_p(claim, "p_holm_e3")), short_verdict(claim.get("verdict")))


def valid(values: Sequence[Any] | None) -> bool:
    return bool(values) and all(v is not None for v in values)


def interval_words(claim: Mapping[str, Any]) -> str:
    """"E3 [lo, hi]", or the E1 interval when E3 is not computed (summary lines)."""
    if is_check(claim):
        return short_verdict(claim.get("verdict"))
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


def _p_pair(claim: Mapping[str, Any], key: str) -> tuple[str, list[str]]:
    """"p = 0.030, Holm-adjusted p = 0.060" for key "e1" or "e3", and the caveats of both."""
    raw, adjusted = claim_p(claim, f"p_{key}"), claim_p(claim, f"p_holm_{key}")
    text = f"{p_statement(raw)}, Holm-adjusted {p_statement(adjusted)}"
    return text, list(dict.fromkeys(why for why in (caveat(raw), caveat(adjusted)) if why))


def check_blocks(claim: Mapping[str, Any], subject: str) -> list[Block]:
    """A check in words: an identity that held (or failed), or a contrast zero up to
    rounding; no estimate, interval or p unless the identity failed."""
    verdict, unit = claim.get("verdict"), claim.get("unit", "")
    reason = (claim.get("check") or {}).get("reason") or claim.get("identity") or "k >= d"
    tolerance = f"{ROUNDING_TOLERANCE:.0e}"
    if verdict == "identity_check_passed":
        return [Paragraph(
            f"{subject}: **identity check passed**. {reason} keeps the states, so the two "
            "conditions are the same function; their difference is zero up to rounding in "
            f"every seed and bootstrap replicate (within {tolerance} {unit}). A check, not a "
            "test: no estimate or p-value is reported, and it takes no part in the Holm "
            "family.")]
    if verdict == "identity_check_failed":
        return [Paragraph(
            f"{subject}: **identity check FAILED**. {reason} should keep the states, so the "
            "two conditions should agree on every item, but they differ: estimate "
            f"{number(claim.get('estimate'), signed=True)} {unit}, E1 interval "
            f"{pair(claim.get('e1'))}, E3 interval {pair(claim.get('e3'))}. The rank cut (or "
            "the evaluation) is not the identity here; check the run before reading the "
            "other results. It takes no part in the Holm family.")]
    return [Paragraph(
        f"{subject}: **no difference in any item**: the contrast is zero up to rounding in "
        f"every seed and bootstrap replicate (within {tolerance} {unit}). A check, not a test: "
        "there is no variance to test against, so no p-value is reported and it takes no "
        "part in the Holm family.")]


def claim_blocks(claim: Mapping[str, Any], *, level: float, lead: str,
                 seeds: Sequence[Any] | None = None, per_seed: bool = True,
                 e3_method: str = "two-way seeds x problems interval",
                 extra: Sequence[str] = (), subject: str | None = None) -> list[Block]:
    """The lead sentence with the verdict in words, then one line each for E1 and E3
    (interval, p, Holm-adjusted p, method), the per-seed values and any ``extra`` lines. A
    check is written by ``check_blocks`` instead, about ``subject`` (default: the claim)."""
    if is_check(claim):
        return check_blocks(claim, subject or str(claim.get("claim", "")).capitalize())
    unit = claim.get("unit", "")
    verdict = claim.get("verdict")
    meaning = VERDICT_MEANING.get(verdict or "", "")
    lines = []
    if valid(claim.get("e1")):
        text, caveats = _p_pair(claim, "e1")
        lines.append(f"E1, {E1_WORDS}: {pct(level)} interval {pair(claim['e1'])} {unit}, "
                     f"{text} ({'; '.join([str(claim.get('e1_method')), *caveats])}).")
    else:
        lines.append(f"E1, {E1_WORDS}: not computed ({claim.get('e1_method') or 'no data'}).")
    if valid(claim.get("e3")):
        text, _ = _p_pair(claim, "e3")
        lines.append(f"E3, {E3_WORDS}: {pct(level)} interval {pair(claim['e3'])} {unit}, "
                     f"{text} ({e3_method}, {number(claim.get('df_e3'))} df).")
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
    if estimate == 0:
        # A point estimate of 0 describes these data; whether there is no effect is for
        # the intervals and the verdict to say.
        return "shows no net change in these data" + (" (estimate 0)" if signed else "")
    direction = "falls" if estimate < 0 else "rises"
    return f"{direction} by {number(abs(estimate))} {unit}" + (
        f" (estimate {number(estimate, signed=True)})" if signed else "")


FIGURE_REF = re.compile(r"\[\[figure:([\w-]+)\]\]")


def figure_ref(name: str) -> str:
    """A reference to the question's figure ``name`` in its prose; the report replaces it
    with the figure's number when it assembles the sections."""
    return f"[[figure:{name}]]"
