"""The report's sentences: every number is read from the analysis dict and printed with its
intervals, and each interval with the claim it supports, in words:

- E1: for these checkpoints (problems random, seeds fixed);
- E3: for a new training run on problems like these (seeds and problems random).

Verdicts follow the protocol: "monotone" only by the intersection-union test, "no different
from random" only by TOST equivalence (otherwise "not shown to differ").

    >>> blocks = claim_blocks(claim, level=0.95, lead="Accuracy falls ...")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ablate.report.document import Block, Bullets, Paragraph
from ablate.report.views import head_scope, number, p_value, pair, verdict_text

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


def _valid(values: Sequence[Any] | None) -> bool:
    return bool(values) and all(v is not None for v in values)


def outcome_words(outcome: str) -> str:
    return OUTCOME_WORDS.get(outcome, outcome)


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
    pct = f"{level:.0%}"
    unit = claim.get("unit", "")
    verdict = claim.get("verdict")
    meaning = VERDICT_MEANING.get(verdict or "", "")
    lines = []
    if _valid(claim.get("e1")):
        lines.append(f"E1, {E1_WORDS}: {pct} interval {pair(claim['e1'])} {unit}, "
                     f"p = {p_value(claim.get('p_e1'))}, Holm-adjusted "
                     f"p = {p_value(claim.get('p_holm_e1'))} ({claim.get('e1_method')}).")
    else:
        lines.append(f"E1, {E1_WORDS}: not computed ({claim.get('e1_method') or 'no data'}).")
    if _valid(claim.get("e3")):
        lines.append(f"E3, {E3_WORDS}: {pct} interval {pair(claim['e3'])} {unit}, "
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


def q1_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q1`` entry: slope, monotonicity, Page, odds ratio, unablated contrast."""
    outcome, unit = outcome_words(entry["outcome"]), entry["unit"]
    ks = ", ".join(map(str, entry["ks"]))
    slope = entry["claims"][0]
    lead = (f"Over k = {ks} ({entry['n_seeds']} seed(s), {entry['n_items']} problems), "
            f"{outcome} {change_text(slope['estimate'], unit)} each time k is halved.")
    blocks = claim_blocks(slope, level=level, lead=lead, seeds=entry.get("seeds"))
    texts = [monotone_text(entry)]
    page = entry.get("page")
    if page:
        texts.append(f"Page's trend test on the seeds x k table of per-seed means asks whether "
                     f"the seeds agree on an increasing order over k: L = "
                     f"{number(page['statistic'])}, p = {p_value(page['p'])} ({page['method']}).")
    odds = entry.get("odds_ratio_per_doubling")
    if odds and odds.get("estimate") is not None:
        texts.append(f"Secondary, {E1_WORDS}: the odds of a correct answer are multiplied by "
                     f"{number(odds['estimate'])} per doubling of k ({pct(level)} interval "
                     f"{pair(odds.get('interval'))}, p = {p_value(odds.get('p'))}; "
                     f"{odds['method']})" + (f"; {odds['note']}." if odds.get("note") else "."))
    blocks += [Paragraph(text) for text in texts]
    for claim in entry["claims"][1:]:
        lead = (f"Unablated minus k = {claim.get('k')}: {outcome} "
                f"{change_text(claim['estimate'], unit)} when the projection is removed.")
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"))
    return blocks + note_blocks(entry)


def pct(level: float) -> str:
    return f"{level:.0%}"


def monotone_text(entry: Mapping[str, Any]) -> str:
    """The intersection-union verdict, naming the weakest adjacent contrast."""
    monotone, adjacent = entry.get("monotone") or {}, entry.get("adjacent") or []
    alpha = monotone.get("alpha", 0.05)
    if not adjacent:
        return "Monotonicity is not tested: fewer than two ranks."

    def weakest(key: str) -> Mapping[str, Any]:
        return max(adjacent, key=lambda a: -1.0 if a.get(key) is None else a[key])

    rule = (f"every adjacent contrast (outcome at 2k minus at k) must be positive at one-sided "
            f"alpha = {alpha} (intersection-union test)")
    if monotone.get("e3") is True:
        return (f"**Monotone across seeds (E3)**: {rule}, and all {len(adjacent)} reject "
                f"{E3_WORDS}; the outcome falls at every halving of k.")
    if monotone.get("e1") is True:
        if monotone.get("e3") is None:
            return (f"**Monotone for these checkpoints (E1)**: {rule}, and all reject {E1_WORDS}. "
                    "With one seed there is no E3 verdict.")
        worst = weakest("p_one_e3")
        return (f"**Monotone for these checkpoints only (E1)**: {rule}. All reject {E1_WORDS}, "
                f"but not {E3_WORDS}: k = {worst['k_high']} vs {worst['k_low']} has one-sided "
                f"E3 p = {p_value(worst.get('p_one_e3'))}.")
    worst = weakest("p_one_e1")
    return (f"**Monotonicity is not shown**: {rule}; k = {worst['k_high']} vs {worst['k_low']} "
            f"does not reject (estimate {number(worst['estimate'], signed=True)} "
            f"{entry['unit']}, one-sided p E1 = {p_value(worst.get('p_one_e1'))}, E3 = "
            f"{p_value(worst.get('p_one_e3'))}). Not shown is not the same as non-monotone.")


def equivalence_text(claim: Mapping[str, Any], margin: Any) -> str:
    """TOST wording by verdict: "no different from random" only when equivalence is shown."""
    verdict = claim.get("verdict")
    if margin is None:
        if verdict in ("not_significant", "one_seed_not_significant", "these_checkpoints_only"):
            return ("No equivalence margin is set ([stats] tost_margin), so 'no different from "
                    "random' cannot be claimed.")
        return ""
    bound = f"±{margin:g} {claim.get('unit', '')}"
    tost = f"TOST equivalence, E3 p = {p_value(claim.get('p_tost_e3'))}"
    equivalent = claim.get("equivalent_e3")
    if equivalent is None:
        tost_e1 = claim.get("p_tost_e1")
        if tost_e1 is None:
            return ""
        shown = "equivalent" if tost_e1 < 0.05 else "not shown equivalent"
        return (f"Equivalence across seeds needs >= 2 seeds; {E1_WORDS} the difference is "
                f"{shown} within {bound} (TOST E1 p = {p_value(tost_e1)}).")
    if verdict == "across_seeds":
        return (f"The difference is real but smaller than the margin {bound} ({tost})."
                if equivalent else "")
    if equivalent:
        return f"**No different from random within {bound}** {E3_WORDS} ({tost})."
    if verdict == "these_checkpoints_only":
        return (f"{E3_WORDS.capitalize()}, it is neither shown to differ from random nor shown "
                f"equivalent within {bound} ({tost}).")
    return (f"Not shown to differ from random, and not shown equivalent within {bound} "
            f"({tost}): the data cannot tell which.")


def q2_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One claim per k of a ``q2`` entry, each with its equivalence statement."""
    outcome = outcome_words(entry["outcome"])
    blocks: list[Block] = []
    for claim in sorted(entry["claims"], key=lambda c: c["k"]):
        lead = (f"At k = {claim['k']}, SVD minus random ({outcome}, mean over "
                f"{entry['n_draws']} random draws per seed, paired per problem) is "
                f"{number(claim['estimate'], signed=True)} {entry['unit']}.")
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"),
                               extra=[equivalence_text(claim, entry.get("margin"))])
    return blocks + note_blocks(entry)


def q3_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q3`` entry: the mean trajectory, the slope and the last-minus-first change."""
    trajectory = entry.get("mean_trajectory") or []
    iterations = entry.get("iterations") or []
    blocks: list[Block] = []
    if trajectory and iterations:
        first, last = iterations[0], iterations[-1]
        blocks.append(Paragraph(f"Mean effective rank over {entry['n_seeds']} seed(s) and "
                     f"{entry['n_items']} sequences: {number(trajectory[0])} at M(0) (the "
                     f"embedding), {number(trajectory[first])} at M({first}) and "
                     f"{number(trajectory[last])} at M({last}). Slopes use iterations "
                     f"{first}..{last}."))
    for claim in entry["claims"]:
        if claim["role"] == "primary":
            lead = f"Effective rank {change_text(claim['estimate'], 'per iteration')}."
        else:
            lead = f"{claim['claim'].capitalize()}: {number(claim['estimate'], signed=True)}."
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"))
    return blocks + note_blocks(entry)


def heads_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q3_heads`` entry: design, slope difference, Welch test, direction flip."""
    a, b = entry["head_a"], entry["head_b"]
    design = ("paired: both heads were evaluated on the same checkpoints, so slopes are "
              "compared seed by seed" if entry["design"] == "paired" else
              "unpaired: the heads are separate checkpoints, so the unit is the checkpoint "
              "(Welch t on per-checkpoint slopes; there is no E1 for this contrast)")
    blocks: list[Block] = [Paragraph(f"{a} vs {b} ({entry['task']} {entry['mode']} "
                                     f"T={entry['n_iterations']}), {design}.")]
    paired = entry["design"] == "paired"
    for claim in entry["claims"]:
        lead = (f"The slope of {a} minus that of {b} is "
                f"{number(claim['estimate'], signed=True)} erank per iteration.")
        blocks += claim_blocks(claim, level=level, lead=lead, per_seed=paired,
                               e3_method="two-way seeds x problems interval" if paired else
                               "Welch interval on per-checkpoint slopes")
    texts = []
    welch = entry.get("welch")
    if welch:
        notes = entry.get("notes", [])
        warning = welch.get("warning")
        texts.append(f"Welch t = {number(welch['t'])} ({number(welch['df'])} df), p = "
                     f"{p_value(welch['p'])}; permutation p = "
                     f"{p_value(welch.get('p_permutation'))} ({welch.get('permutation_method')})."
                     + (f" {warning}." if warning and warning not in notes else ""))
    flip = entry.get("direction_flip")
    if flip:
        forward = max(_or_one(flip.get("p_a_positive")), _or_one(flip.get("p_b_negative")))
        backward = max(_or_one(flip.get("p_b_positive")), _or_one(flip.get("p_a_negative")))
        up, down = (a, b) if forward <= backward else (b, a)
        if flip.get("flips") is True:
            texts.append(f"**The direction flips with the head** {E3_WORDS}: effective rank "
                         f"rises over iterations with {up} and falls with {down} "
                         f"(p = {p_value(flip['p'])}; {flip['method']}).")
        elif flip.get("flips") is False:
            texts.append(f"A flip of direction between the heads is **not shown** "
                         f"(p = {p_value(flip['p'])}; {flip['method']}).")
        else:
            texts.append("The direction-flip test needs an E3 slope for both heads (>= 2 "
                         "seeds each): not tested.")
    return blocks + [Paragraph(text) for text in texts] + note_blocks(entry)


def _or_one(value: Any) -> float:
    return 1.0 if value is None else float(value)


def q4_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q4`` entry: adjusted slopes, rank correlations, depth agreement, length."""
    blocks: list[Block] = [Paragraph(
        f"Effective rank of M({entry.get('erank_iteration')}) on unablated rows over "
             f"{entry['n_items']} problems ({entry.get('n_excluded_unknown_depth', 0)} "
             "excluded for unknown depth); all problems are used, since conditioning on "
             "correctness would open a collider path.")]
    blocks += depth_claim_blocks(entry["claims"], level, subject="effective rank",
                                 length_adjusted=bool(entry.get("length_adjusted")))
    texts = association_texts(entry, level, length_figure=8)
    return blocks + [Paragraph(text) for text in texts if text] + note_blocks(entry)


def depth_claim_blocks(claims: Sequence[Mapping[str, Any]], level: float, *, subject: str,
                       length_adjusted: bool) -> list[Block]:
    """Depth slopes of ``subject``: annotation count (primary), solution lines (secondary)."""
    blocks: list[Block] = []
    for claim in claims:
        primary = claim["role"] == "primary"
        depth = "calculator annotation" if primary else "solution line"
        adjusted = "holding log n_tokens fixed" if length_adjusted else \
            "(length is constant here, so nothing is adjusted)"
        lead = (f"{'Primary' if primary else 'Secondary'}: {subject} changes by "
                f"{number(claim['estimate'], signed=True)} per {depth}, {adjusted}.")
        blocks += claim_blocks(claim, level=level, lead=lead)
    return blocks


def association_texts(summary: Mapping[str, Any], level: float, *,
                      length_figure: int | None = None) -> list[str]:
    """Rank correlations, depth agreement and the length check of a depth summary (a
    ``q4`` entry or a ``q5`` entry's ``depth``); empty strings where a part is missing."""
    texts = []
    for key, name in (("kendall_tau_b", "Kendall tau-b of depth with the seed-mean erank "
                                        "(unadjusted)"),
                      ("partial_spearman", "Partial Spearman correlation given log n_tokens")):
        found = summary.get(key)
        if found:
            texts.append(f"{name}: {number(found['estimate'], signed=True)} ({pct(level)} "
                         f"interval {pair(found.get('interval'))}, p = "
                         f"{p_value(found.get('p'))}; {found['method']}), {E1_WORDS}.")
    agreement = summary.get("depth_agreement")
    if agreement:
        texts.append(f"Annotation count and solution lines agree with Kendall tau-b "
                     f"{number(agreement.get('kendall_tau_b'))} and Spearman "
                     f"{number(agreement.get('spearman'))} over {agreement.get('n_items')} "
                     f"problems; {number(100 * agreement['share_equal'])}% have equal counts."
                     if agreement.get("share_equal") is not None else "")
    rho = summary.get("erank_length_spearman")
    if rho is not None:
        figure = f" (figure {length_figure})" if length_figure else ""
        texts.append(f"Confounding check: the Spearman correlation of seed-mean effective "
                     f"rank with n_tokens is {number(rho, signed=True)}; the larger it is, the "
                     f"more an unadjusted depth association would reflect length{figure}.")
    return texts


def summary_items(analysis: Mapping[str, Any]) -> list[str]:
    """One line per headline claim, with its E3 (or, with one seed, E1) interval."""
    def interval_words(claim: Mapping[str, Any]) -> str:
        if _valid(claim.get("e3")):
            return f"E3 {pair(claim['e3'])}"
        return f"E1 {pair(claim.get('e1'))}; E3 not computed"

    items = []
    for entry in analysis.get("q1", []):
        if entry["outcome"] != "correct":
            continue
        slope = entry["claims"][0]
        items.append(f"Q1, {head_scope(entry)}: accuracy "
                     f"{change_text(slope['estimate'], 'pp', signed=False)} per halving of k "
                     f"({interval_words(slope)}): {verdict_text(slope['verdict'])}. "
                     f"{_short_monotone(entry)}")
    for entry in analysis.get("q2", []):
        if entry["outcome"] != "correct":
            continue
        parts = [f"k={c['k']}: {number(c['estimate'], signed=True)} pp ({interval_words(c)}, "
                 f"{_short_verdict(c)})" for c in sorted(entry["claims"], key=lambda c: c["k"])]
        items.append(f"Q2, {head_scope(entry)}: SVD minus random accuracy, " + "; ".join(parts)
                     + ".")
    for entry in analysis.get("q3", []):
        claim = entry["claims"][0]
        items.append(f"Q3, {head_scope(entry, site=False)}: effective rank "
                     f"{change_text(claim['estimate'], '', signed=False).rstrip()} per iteration "
                     f"({interval_words(claim)}): {verdict_text(claim['verdict'])}.")
    for entry in analysis.get("q3_heads", []):
        flip = entry.get("direction_flip") or {}
        state = {True: f"the direction flips with the head (p = {p_value(flip.get('p'))})",
                 False: f"a flip of direction with the head is not shown (p = "
                        f"{p_value(flip.get('p'))})"}.get(
            flip.get("flips"), "the direction flip is not tested (each head needs >= 2 seeds)")
        items.append(f"Q3 heads, {entry['head_a']} vs {entry['head_b']}: {state}.")
    for entry in analysis.get("q4", []):
        claim = next((c for c in entry["claims"] if c["role"] == "primary"), None)
        if claim:
            items.append(f"Q4, {head_scope(entry, site=False)}: "
                         f"{number(claim['estimate'], signed=True)} erank per calculator "
                         f"annotation, length-adjusted ({interval_words(claim)}): "
                         f"{verdict_text(claim['verdict'])}.")
    for entry in analysis.get("q5", []):
        for claim in (c for c in entry["claims"] if c["role"] == "primary"):
            what = (f"latent effective rank {change_text(claim['estimate'], '', signed=False)}"
                    .rstrip() + " per latent step" if claim.get("aspect") == "profile" else
                    f"{number(claim['estimate'], signed=True)} mean latent erank per "
                    "calculator annotation, length-adjusted")
            items.append(f"Q5, {head_scope(entry, site=False)}: {what} "
                         f"({interval_words(claim)}): {verdict_text(claim['verdict'])}.")
    for entry in analysis.get("q5_latents", []):
        if entry["outcome"] != "correct":
            continue
        for claim in entry["claims"]:
            items.append(f"Q5, {head_scope(entry, site=False)}: accuracy with "
                         f"{claim['n_latents']} latent thoughts minus none "
                         f"{number(claim['estimate'], signed=True)} pp "
                         f"({interval_words(claim)}): {verdict_text(claim['verdict'])}.")
    return items


def _short_monotone(entry: Mapping[str, Any]) -> str:
    monotone = entry.get("monotone") or {}
    if monotone.get("e3") is True:
        return "Monotone across seeds."
    if monotone.get("e1") is True:
        return "Monotone for these checkpoints only."
    return "Monotonicity not shown."


def _short_verdict(claim: Mapping[str, Any]) -> str:
    if claim.get("equivalent_e3") is True:
        return "equivalent to random within the margin"
    return {"across_seeds": "differs across seeds",
            "these_checkpoints_only": "differs for these checkpoints only",
            "not_significant": "not shown to differ",
            "one_seed_these_checkpoints": "differs for this checkpoint (one seed)",
            "one_seed_not_significant": "not shown to differ (one seed)"}.get(
                claim.get("verdict") or "", "n/a")
