"""The report's sentences for Q5, matrix-CODI latent thoughts (``q5`` and ``q5_latents``
entries of the analysis), in the words of ablate.report.prose: every number with its E1
and E3 intervals and the claim each supports.

Latent thoughts are numbered Z_1..Z_n (Z_1 is the first); the study's ablation site
``latent.j`` is 0-based and edits Z_{j+1}.

    >>> blocks = q5_blocks(analysis["q5"][0], level=0.95)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ablate.report.document import Block, Paragraph
from ablate.report.prose import (
    association_texts,
    change_text,
    claim_blocks,
    depth_claim_blocks,
    note_blocks,
    outcome_words,
)
from ablate.report.views import number, p_value

LATENTS_INTRO = (
    "Matrix-CODI thinks in latent matrices Z_1..Z_n (numbered from 1 here; the ablation "
    "site latent.j edits Z_(j+1)). On unablated rows, three questions: does the effective "
    "rank (Roy and Vetterli) change from one latent thought to the next (per seed: the "
    "least-squares slope over latent steps, primary, and Z_n minus Z_1, secondary); does "
    "the mean effective rank over a problem's latent thoughts follow reasoning depth once "
    "length is accounted for (the depth coefficient of erank ~ depth + log(n_tokens), as in "
    "Q4); and does thinking help: accuracy and answer log-likelihood with n latent thoughts "
    "minus without any (L_n minus L_0, paired per problem). Problems of unknown depth (no "
    "calculator annotations) stay in the profile and the L_n contrasts, and are left out "
    "of the depth statistics and counted. A single seed is a description of one "
    "checkpoint, not an inference about training runs.")
NO_LATENTS = ("Not tested: no unablated row carries latent thoughts (a non-empty "
              "latent_erank, as `ablate codi study` writes for n_latents > 0).")
NO_LATENT_BASELINE = ("The number of latents is not tested: the run has no n_latents = 0 "
                      "(no-thought) baseline to compare with.")


def _profile_text(entry: Mapping[str, Any]) -> str:
    profile = entry.get("mean_profile") or []
    steps = ", ".join(f"Z_{j} {number(value)}"
                      for j, value in zip(entry.get("latents") or [], profile, strict=True))
    return (f"Effective rank of each latent thought on unablated rows, mean over "
            f"{entry['n_seeds']} seed(s) and {entry['n_items']} problems: {steps}.")


def q5_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q5`` entry: the profile over latent steps, its slope and Z_n minus Z_1, then
    the depth association of the mean latent erank with its exploratory per-latent scan."""
    blocks: list[Block] = [Paragraph(_profile_text(entry))]
    n_latents = entry["n_latents"]
    for claim in (c for c in entry["claims"] if c.get("aspect") == "profile"):
        if claim["role"] == "primary":
            lead = (f"Over the {n_latents} latent thoughts, effective rank "
                    f"{change_text(claim['estimate'], 'erank per latent step')}.")
        else:
            lead = (f"Z_{n_latents} minus Z_1: {number(claim['estimate'], signed=True)} "
                    "erank.")
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"))
    depth = entry.get("depth")
    if depth:
        blocks.append(Paragraph(
            f"Depth: the mean effective rank over the {n_latents} latent thoughts of each "
            f"problem, over {depth['n_items']} problems "
            f"({depth.get('n_excluded_unknown_depth', 0)} excluded for unknown depth); all "
            "problems are used, since conditioning on correctness would open a collider "
            "path."))
        blocks += depth_claim_blocks(
            [c for c in entry["claims"] if c.get("aspect") == "depth"], level,
            subject="mean latent effective rank",
            length_adjusted=bool(depth.get("length_adjusted")))
        texts = association_texts(depth, level) + [_per_latent_text(depth.get("per_latent"))]
        blocks += [Paragraph(text) for text in texts if text]
    return blocks + note_blocks(entry)


def _per_latent_text(scan: Mapping[str, Any] | None) -> str:
    if not scan or not scan.get("latents"):
        return ""
    which = "E3" if scan.get("p_method") == "p_e3" else "E1 bootstrap"
    parts = ", ".join(f"Z_{j} {number(estimate, signed=True)} (BH p {p_value(p_bh)})"
                      for j, estimate, p_bh in zip(scan["latents"], scan["estimate"],
                                                   scan["p_bh"], strict=True))
    return (f"Exploratory, not a pre-registered claim: the length-adjusted depth slope of "
            f"each latent thought's effective rank (erank per calculator annotation; "
            f"{which} p-values, Benjamini-Hochberg over the latents): {parts}.")


def _level(value: Any, unit: str) -> str:
    return f"{number(value)}%" if unit == "pp" else f"{number(value)} {unit}"


def q5_latents_blocks(entry: Mapping[str, Any], level: float) -> list[Block]:
    """One ``q5_latents`` entry: the outcome at each number of latents, then each L_n minus
    L_0 contrast."""
    outcome, unit = outcome_words(entry["outcome"]), entry["unit"]
    levels = ", ".join(f"{m['n_latents']} latent thoughts {_level(m['estimate'], unit)}"
                       for m in entry.get("means", []))
    blocks: list[Block] = [Paragraph(
        f"{outcome.capitalize()} on unablated rows, mean over {entry['n_seeds']} seed(s) and "
        f"{entry['n_items']} problems: {levels}. Each contrast pairs the same problems and "
        "checkpoint.")]
    for claim in entry["claims"]:
        lead = (f"With {claim['n_latents']} latent thoughts instead of none, {outcome} "
                f"{change_text(claim['estimate'], unit)}.")
        blocks += claim_blocks(claim, level=level, lead=lead, seeds=entry.get("seeds"))
    return blocks + note_blocks(entry)
