"""How precisely a p-value is known, and how it is written. Every p-value the report,
`ablate stats` and the figures show passes through ``resolve_p`` and ``format_p``.

A bootstrap p-value from B replicates is a count: with the +1 smoothing of
``ablate.stats.intervals`` it cannot go below 1/(B+1) one-sided or 2/(B+1) two-sided, the
value it takes when no replicate crosses the null. Such a p is a bound ("p < 2/B"), never a
value; and the protocol (shared/spec/statistics.md) asks for B >= 10,000 before a bootstrap
p below 0.01 is reported, because at B = 2000 its Monte-Carlo error is a third of its size.
Model p-values (t, z, scipy) are not counts; below 0.001 they are written "p < 0.001",
since no model here is trustworthy that far into its tail (analysis.json keeps the values).

    >>> resolve_p(2 / 2001, n_boot=2000).kind, format_p(resolve_p(2 / 2001, n_boot=2000).bound)
    ('floor', '0.001')
    >>> resolve_p(0.004, n_boot=2000).kind, resolve_p(0.004, n_boot=10_000).kind
    ('coarse', 'exact')
    >>> p_statement(resolve_p(3e-14)), p_statement(resolve_p(0.0312))
    ('p < 0.001', 'p = 0.031')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MIN_N_BOOT = 2000  # the protocol's minimum B; fewer is a smoke run
PRECISE_P_BOOT = 10_000  # B needed before a bootstrap p < PRECISE_BELOW is reported
PRECISE_BELOW = 0.01
SMALLEST_SHOWN = 0.001  # a smaller p is written "p < 0.001"
# A p within this relative distance of the floor counts as the floor (JSON keeps 10 digits).
_FLOOR_SLACK = 1e-6


@dataclass(frozen=True)
class PResolution:
    """A p-value and how far it can be trusted.

    kind: "exact" (a model p, or a bootstrap p that B resolves), "small" (such a p below
    0.001, written as ``p < bound`` = 0.001), "floor" (no bootstrap replicate crossed the
    null: only ``p < bound`` is known) or "coarse" (a bootstrap p below 0.01 from fewer than
    10,000 replicates), or "missing" (no p). ``bound`` is set for "small" and "floor": 2/B
    two-sided, 1/B one-sided (times the Holm factor for an adjusted p)."""

    kind: str
    value: float | None
    n_boot: int | None = None
    bound: float | None = None


def _finite(value: Any) -> bool:
    return (value is not None and not isinstance(value, bool)
            and isinstance(value, (int, float)) and math.isfinite(value))


def bootstrap_floor(n_boot: int, *, one_sided: bool = False) -> float:
    """The smallest bootstrap p B replicates can give: 1/(B+1) one-sided, 2/(B+1) two-sided."""
    return (1.0 if one_sided else 2.0) / (n_boot + 1)


def resolve_p(p: Any, *, n_boot: int | None = None, one_sided: bool = False,
              raw: Any = None) -> PResolution:
    """How ``p`` can be reported. ``n_boot`` is given for a bootstrap p (None: a model p);
    ``raw`` is the unadjusted bootstrap p behind a Holm-adjusted ``p`` (its floor makes the
    adjusted value a bound too)."""
    if not _finite(p):
        return PResolution("missing", None)
    value = float(p)
    if n_boot is None:
        return _small(PResolution("exact", value))
    floor = bootstrap_floor(n_boot, one_sided=one_sided)
    unadjusted = float(raw) if _finite(raw) else value
    if unadjusted <= floor * (1 + _FLOOR_SLACK):
        # The +1 smoothing puts the floor at 2/(B+1); the bound it stands for is 2/B (times
        # the Holm factor of an adjusted p). Rounded, so 2/B prints as itself.
        bound = round(value * (n_boot + 1) / n_boot, 12)
        return PResolution("floor", value, n_boot, min(1.0, bound))
    if value < PRECISE_BELOW and n_boot < PRECISE_P_BOOT:
        return PResolution("coarse", value, n_boot)
    return _small(PResolution("exact", value, n_boot))


def _small(resolution: PResolution) -> PResolution:
    value = resolution.value
    if value is not None and value < SMALLEST_SHOWN:
        return PResolution("small", value, resolution.n_boot, SMALLEST_SHOWN)
    return resolution


def format_p(value: Any) -> str:
    """The number of a p-value: three decimals, or two significant digits below 0.001."""
    if not _finite(value):
        return "n/a"
    value = float(value)
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def p_statement(resolution: PResolution, name: str = "p") -> str:
    """"p = 0.030", "p < 0.001" (below 0.001, or a bootstrap floor) or "p = n/a"."""
    if resolution.kind in ("floor", "small"):
        return f"{name} < {format_p(resolution.bound)}"
    return f"{name} = {format_p(resolution.value)}"


def caveat(resolution: PResolution) -> str:
    """Why a bootstrap p is a bound or imprecise, in one clause; "" when it is neither."""
    if resolution.kind == "floor":
        return (f"no bootstrap replicate of B = {resolution.n_boot} crossed zero, so only the "
                "bound is known")
    if resolution.kind == "coarse":
        return (f"a bootstrap p below {PRECISE_BELOW:g} from B = {resolution.n_boot} "
                f"replicates is imprecise: rerun with n_boot >= {PRECISE_P_BOOT:,} to "
                "report it")
    return ""
