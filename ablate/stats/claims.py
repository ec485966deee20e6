"""Claims: one tested statement each, shared by every research question (ablate.questions).

A ``Claim`` carries the estimate, both intervals, p-values, its Holm family and a verdict
that says which claim (E1: these checkpoints; E3: a new training run) the data support.
Holm runs once, over every question's claims, within each family (``apply_holm``). A
contrast that is zero up to rounding in every seed and replicate, or one whose conditions
are the same function by construction (``identity``: k >= d keeps the states), is a check,
not a test: ``apply_holm`` gives it a check verdict and leaves it out of its family.
``json_ready`` rounds floats to 10 significant digits and maps NaN to None so that the
analysis serialises to identical bytes for identical input and seed.

    >>> claim = interval_claim(result, claim="correct changes when k is halved",
    ...                        family="q1|...", unit="pp per halving of k")  # doctest: +SKIP
    >>> apply_holm([claim], alpha=0.05)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from ablate.stats.intervals import ONE_SEED_REASON, TwoWayResult
from ablate.stats.multiplicity import holm
from ablate.stats.pvalues import PResolution, resolve_p

SIGNIFICANT_DIGITS = 10
BOOTSTRAP_METHOD = "paired problem bootstrap"  # e1_method of a claim whose p_e1 is bootstrapped
# A contrast is zero up to rounding when its estimate, per-seed values, E1 bootstrap ends
# and E3 standard error all lie within this distance of 0, in the claim's unit (pp, nats,
# bits per byte, erank). float64 rounding of these quantities stays below 1e-12; a real
# effect of 1e-9 of a percentage point or a nat is beyond anything an experiment resolves.
ROUNDING_TOLERANCE = 1e-9


@dataclass(frozen=True)
class GroupKey:
    """The unit of analysis: one head (config_label) on one task, mode and T."""

    config_label: str
    task: str
    mode: str
    n_iterations: int

    def as_dict(self) -> dict[str, Any]:
        return {"config_label": self.config_label, "task": self.task, "mode": self.mode,
                "n_iterations": self.n_iterations}

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> GroupKey:
        return cls(entry["config_label"], entry["task"], entry["mode"], entry["n_iterations"])

    def family(self, prefix: str, *parts: str) -> str:
        """Holm family id, e.g. "q1|multiprobe|gsm8k|teacher_forced|T=8|head_input"."""
        fields = [prefix, self.config_label, self.task, self.mode, f"T={self.n_iterations}"]
        return "|".join(fields + list(parts))


VERDICTS = {
    "across_seeds": "significant across seeds (E3, Holm-adjusted)",
    "these_checkpoints_only": "significant for these checkpoints (E1) but not across seeds (E3)",
    "not_significant": "not significant (E1 and E3)",
    # >= 2 seeds, but one of the two intervals could not be computed (e.g. zero E3
    # variance, or no E1 for heads trained separately): the verdict names the one that was.
    "these_checkpoints_e3_not_computed": "significant for these checkpoints (E1); E3 not "
                                         "computed",
    "not_significant_e3_not_computed": "not significant for these checkpoints (E1); E3 not "
                                       "computed",
    "not_significant_e1_not_computed": "not significant across seeds (E3); E1 not computed",
    "not_tested": "not tested: neither E1 nor E3 could be computed",
    "one_seed_these_checkpoints": "one seed: significant for this checkpoint only (E1); "
                                  "no inference across seeds",
    "one_seed_not_significant": "one seed: not significant for this checkpoint (E1); "
                                "no inference across seeds",
    # Checks, not tests: left out of their Holm family.
    "identity_check_passed": "identity check passed",
    "identity_check_failed": "identity check FAILED",
    "zero_up_to_rounding": "no difference in any item (zero up to rounding): a check, not a "
                           "test",
}
CHECK_VERDICTS = ("identity_check_passed", "identity_check_failed", "zero_up_to_rounding")


def json_ready(value: Any) -> Any:
    """Recursively convert to JSON types: floats rounded to 10 significant digits, NaN/inf
    to None, numpy scalars and arrays to Python numbers and lists, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return [json_ready(item) for item in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            return None
        # "+ 0.0" turns -0.0 into 0.0 so equal results serialise to equal bytes.
        return float(f"{number:.{SIGNIFICANT_DIGITS}g}") + 0.0
    return value


@dataclass
class Claim:
    """One tested statement (two-sided unless its claim says otherwise), in the key order of
    its JSON form (docs/statistics.md). ``extra`` holds a question's own keys, written
    after the common ones (e.g. ``k`` for Q2, ``aspect`` for Q5). ``e1_bootstrap`` and
    ``p_e1_bootstrap`` are left out of the JSON when no problem bootstrap was run (None).
    ``n_boot`` is the number of bootstrap replicates behind the bootstrap p-values (None
    when none ran). ``identity`` says why the compared conditions are the same function by
    construction ("k=8 >= d=8"), when they are. Holm fills ``p_holm_e1``, ``p_holm_e3``,
    ``verdict`` and, for a check, ``check``."""

    claim: str
    family: str
    role: str
    unit: str
    estimate: float
    e1: list[float]
    p_e1: float | None
    e1_method: str
    e1_bootstrap: list[float] | None
    p_e1_bootstrap: float | None
    e3: list[float]
    p_e3: float | None
    df_e3: float | None
    se_e3: float | None
    per_seed: list[float]
    n_seeds: int
    n_items: int
    n_boot: int | None = None
    identity: str | None = None
    p_holm_e1: float | None = None
    p_holm_e3: float | None = None
    verdict: str | None = None
    check: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        if self.e1_bootstrap is None:
            del record["e1_bootstrap"], record["p_e1_bootstrap"]
        return record | self.extra

    def with_extra(self, **extra: Any) -> Claim:
        """This claim with question-specific keys added (returns itself)."""
        self.extra.update(extra)
        return self


def interval_claim(result: TwoWayResult, *, claim: str, family: str, unit: str,
                   role: str = "primary", e1_model: Mapping[str, Any] | None = None) -> Claim:
    """A claim from a two-way result; ``e1_model`` (estimate/interval/p/method) replaces
    the bootstrap E1 where the protocol names a model, and the bootstrap stays as
    e1_bootstrap. Holm fields are filled later by ``apply_holm``."""
    notes = [] if result.e3_reason is None else [result.e3_reason]
    e1, p_e1, method = list(result.e1), result.p_e1, BOOTSTRAP_METHOD
    if e1_model is not None:
        e1, p_e1, method = list(e1_model["interval"]), e1_model["p"], e1_model["method"]
    return Claim(claim=claim, family=family, role=role, unit=unit, estimate=result.estimate,
                 e1=e1, p_e1=p_e1, e1_method=method, e1_bootstrap=list(result.e1),
                 p_e1_bootstrap=result.p_e1, e3=list(result.e3), p_e3=result.p_e3,
                 df_e3=result.df_e3, se_e3=result.se_e3, per_seed=list(result.per_seed),
                 n_seeds=result.n_seeds, n_items=result.n_items, n_boot=result.n_boot,
                 notes=notes)


def p_resolution(claim: Mapping[str, Any], key: str) -> PResolution:
    """How a claim's p ("p_e1", "p_holm_e1", "p_e3", "p_holm_e3"; JSON form) can be
    reported: its E1 p-values are bootstrap counts when ``e1_method`` is the bootstrap."""
    bootstrap = "e1" in key and claim.get("e1_method") == BOOTSTRAP_METHOD
    return resolve_p(claim.get(key), n_boot=claim.get("n_boot") if bootstrap else None,
                     raw=claim.get("p_e1") if key == "p_holm_e1" else None)


def largest_deviation(claim: Claim) -> float:
    """The largest distance from 0 of the claim's estimate, per-seed values, E1 bootstrap
    ends and E3 standard error (NaN ones skipped): how far the contrast is from none."""
    values = [claim.estimate, *claim.per_seed, *(claim.e1_bootstrap or claim.e1), claim.se_e3]
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    return max(finite, default=math.nan)


def rounding_zero(claim: Claim) -> bool:
    """Whether the contrast is zero up to rounding in every seed and bootstrap replicate."""
    deviation = largest_deviation(claim)
    return math.isfinite(deviation) and deviation <= ROUNDING_TOLERANCE


def check_of(claim: Claim) -> dict[str, Any] | None:
    """The check a claim is, or None for a test: an expected identity (passed when the
    contrast is zero up to rounding, else failed), or a contrast zero up to rounding."""
    zero = rounding_zero(claim)
    if claim.identity is None and not zero:
        return None
    return {"kind": "identity" if claim.identity else "rounding", "reason": claim.identity,
            "passed": zero, "largest_deviation": largest_deviation(claim),
            "tolerance": ROUNDING_TOLERANCE}


def apply_holm(claims: list[Claim], *, alpha: float) -> None:
    """Fill p_holm_e1/p_holm_e3 and the verdict of every claim, Holm within each family.
    Checks (``check_of``) get their check and verdict and no Holm p: they are not tests,
    and counting them would weaken every other test of their family."""
    families: dict[str, list[Claim]] = {}
    for record in claims:
        record.check = check_of(record)
        if record.check is not None:
            record.p_holm_e1 = record.p_holm_e3 = None
            record.verdict = ("zero_up_to_rounding" if record.check["kind"] == "rounding"
                              else "identity_check_passed" if record.check["passed"]
                              else "identity_check_failed")
            continue
        families.setdefault(record.family, []).append(record)
    for members in families.values():
        for key in ("e1", "e3"):
            adjusted = holm([_as_p(getattr(record, f"p_{key}")) for record in members])
            for record, p in zip(members, adjusted, strict=True):
                setattr(record, f"p_holm_{key}", float(p) if math.isfinite(p) else None)
    for members in families.values():
        for record in members:
            record.verdict = _verdict(record, alpha)


def _as_p(value: Any) -> float:
    return math.nan if value is None else float(value)


def _verdict(record: Claim, alpha: float) -> str:
    e1, e3 = record.p_holm_e1, record.p_holm_e3
    e1_rejects = e1 is not None and e1 < alpha
    if record.n_seeds < 2 or e3 is None and ONE_SEED_REASON in record.notes:
        return "one_seed_these_checkpoints" if e1_rejects else "one_seed_not_significant"
    if e3 is not None and e3 < alpha:
        return "across_seeds"
    if e3 is None:
        if e1 is None:
            return "not_tested"
        return ("these_checkpoints_e3_not_computed" if e1_rejects
                else "not_significant_e3_not_computed")
    if e1 is None:
        return "not_significant_e1_not_computed"
    return "these_checkpoints_only" if e1_rejects else "not_significant"
