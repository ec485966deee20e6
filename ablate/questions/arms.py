"""The arms of a site: the rows of each registered intervention kind there (selected by the
role its registration declares, never by name), pivoted per k into arrays aligned on one
set of seeds and items, one ``SiteOutcome`` per outcome the records hold.

    >>> for found in site_outcomes(group, "head_input", site_rows, unablated):  # doctest: +SKIP
    ...     print(found.outcome if isinstance(found, SiteOutcome) else found.text)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from ablate.interventions import INTERVENTIONS, Intervention, arm_kind
from ablate.questions.base import Arm, RunNote, SiteOutcome
from ablate.stats.claims import GroupKey
from ablate.stats.frames import (
    DrawArray,
    SeedItemArray,
    check_aligned,
    pivot_condition,
    pivot_draws,
)

# outcome column -> (scale, unit): accuracy is reported in percentage points.
OUTCOMES = {"correct": (100.0, "pp"), "answer_loglik": (1.0, "nats")}


def analysed(intervention: str) -> bool:
    """Whether rows of this ``intervention`` value belong to a registered kind's arm."""
    return arm_kind(intervention) is not None


def usable(rows: pd.DataFrame, column: str) -> bool:
    return column in rows.columns and bool(rows[column].notna().any())


def _arm_rows(site_rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(intervention value, rows) of every registered kind at the site, in registration
    order (ablations before their controls), then by value."""
    order = {name: index for index, name in enumerate(INTERVENTIONS)}
    names = sorted({str(v) for v in site_rows["intervention"] if analysed(str(v))},
                   key=lambda v: (order[str(arm_kind(v)[0].name)], v))  # type: ignore[index]
    return [(name, site_rows[site_rows["intervention"] == name]) for name in names]


def _ks(rows: pd.DataFrame) -> list[int | None]:
    ks = sorted({int(k) for k in rows["k"].dropna()})
    return list(ks) if ks else [None]


def _pivot(rows: pd.DataFrame, column: str, k: int | None, control: bool,
           drawn: bool) -> SeedItemArray | DrawArray:
    if control and drawn:
        return pivot_draws(rows, column, k=k)
    array = pivot_condition(rows, column, k=k)
    if not control:
        return array
    return DrawArray(values=array.values[:, None, :], seeds=array.seeds, draws=(0,),
                     item_ids=array.item_ids)


def _arms(arm_rows: list[tuple[str, pd.DataFrame]], column: str,
          reference: SeedItemArray) -> list[Arm]:
    arms = []
    for name, rows in arm_rows:
        found = arm_kind(name)
        assert found is not None
        kind, settings = found
        control = kind.role.name == "control"
        arrays: dict[int | None, Any] = {}
        for k in _ks(rows):
            array = _pivot(rows, column, k, control, "draw" in kind.param_names)
            check_aligned(reference, array, f"{rows['intervention'].iloc[0]} k={k}")
            arrays[k] = array
        arms.append(Arm(name=name, kind=kind.name, role=kind.role, settings=settings,
                        arrays=arrays, short=kind.short_name, display=kind.display_name))
    return arms


def _reference(name: str, rows: pd.DataFrame, column: str) -> SeedItemArray:
    """The first k (and first draw) of the first arm: seeds and items every array shares."""
    kind, _ = arm_kind(name)  # type: ignore[misc]
    k = _ks(rows)[0]
    if kind.role.name == "control" and "draw" in kind.param_names:
        return pivot_condition(rows, column, k=k, draw=int(rows["draw"].dropna().min()))
    return pivot_condition(rows, column, k=k)


def _finite(arms: list[Arm], *extra: np.ndarray) -> bool:
    arrays = [a.values for arm in arms for a in arm.arrays.values()] + list(extra)
    return all(np.all(np.isfinite(a)) for a in arrays)


def site_outcomes(group: GroupKey, site: str, site_rows: pd.DataFrame,
                  unablated: pd.DataFrame) -> Iterator[SiteOutcome | RunNote]:
    """Each outcome the site's rows hold (accuracy, answer log-likelihood, then bits per
    byte when solution_nats and solution_bytes exist and an ablation has ranks), or a run
    note when its values are incomplete."""
    keys = {**group.as_dict(), "site": site}
    arm_rows = _arm_rows(site_rows)
    if not arm_rows:
        return
    for outcome, (scale, unit) in OUTCOMES.items():
        if not usable(site_rows, outcome):
            continue
        reference = _reference(*arm_rows[0], outcome)
        arms = _arms(arm_rows, outcome, reference)
        plain = None
        if usable(unablated, outcome):
            plain = pivot_condition(unablated, outcome)
            check_aligned(reference, plain, f"unablated ({group.config_label})")
        if not _finite(arms, *([] if plain is None else [plain.values])):
            yield RunNote(f"{outcome} has missing values at {keys}: skipped")
            continue
        yield SiteOutcome(group, site, outcome, unit, scale, tuple(arms), plain, reference)
    if usable(site_rows, "solution_nats") and usable(site_rows, "solution_bytes"):
        found = _bits_per_byte(group, site, arm_rows, unablated)
        if found is not None:
            yield found


def _bits_per_byte(group: GroupKey, site: str, arm_rows: list[tuple[str, pd.DataFrame]],
                   unablated: pd.DataFrame) -> SiteOutcome | RunNote | None:
    """Bits per byte is a ratio of sums over documents: the arrays hold solution_nats and
    ``n_bytes`` the bytes, taken from the first ablation with ranks."""
    first = next(((name, rows) for name, rows in arm_rows
                  if arm_kind(name)[0].role.name == "ablation"  # type: ignore[index]
                  and rows["k"].notna().any()), None)
    if first is None:
        return None
    name, rows = first
    k = _ks(rows)[0]
    reference = pivot_condition(rows, "solution_nats", k=k)
    n_bytes = pivot_condition(rows, "solution_bytes", k=k).values
    arms = _arms(arm_rows, "solution_nats", reference)
    if not _finite(arms, n_bytes):
        keys = {**group.as_dict(), "site": site}
        return RunNote(f"bits_per_byte inputs have missing values at {keys}: skipped")
    plain = None
    if usable(unablated, "solution_nats"):
        plain = pivot_condition(unablated, "solution_nats")
        check_aligned(reference, plain, f"unablated ({group.config_label})")
        if not np.all(np.isfinite(plain.values)):
            plain = None
    return SiteOutcome(group, site, "bits_per_byte", "bits per byte", 1.0, tuple(arms), plain,
                       reference, n_bytes=n_bytes)


def identity_reason(arm: Arm, k: int | None, d: int | None) -> str | None:
    """Why ``arm`` at rank ``k`` keeps the states unchanged by its kind's registered rule
    ("k=8 >= d=8" for rank-k projections), or None: it does not, the kind has no rule, or
    the matrix size ``d`` is unknown (run manifests before d was recorded)."""
    if d is None:
        return None
    kind = INTERVENTIONS.get(arm.kind)
    if kind is None or kind.identity is None:
        return None
    settings = {**arm.settings, **({} if k is None else {"k": k})}
    return Intervention(arm.kind, **settings).identity_reason(d)


# --- names for the report, from the registry -------------------------------------------

def arm_names(intervention: str) -> tuple[str, str]:
    """(short, display) names of a records' intervention value ("SVD", "SVD top-k"); the
    value itself where its kind is not registered in this process."""
    found = arm_kind(intervention)
    if found is None:
        return intervention, intervention
    kind, settings = found
    variant = intervention.partition(":")[2]
    suffix = f" ({variant.replace(':', ', ')})" if variant else ""
    return kind.short_name + suffix, kind.display_name + suffix


def ranked_ablations() -> list[str]:
    """Registered ablation kinds that take k (what Q1 trends over)."""
    return [kind.name for kind in INTERVENTIONS.values()
            if kind.role.name == "ablation" and "k" in kind.param_names]


def control_pairs() -> list[tuple[str, str]]:
    """(control, its ablation) of every registered control kind."""
    return [(kind.name, str(kind.role.of)) for kind in INTERVENTIONS.values()
            if kind.role.name == "control"]


def either(names: list[str]) -> str:
    """"a", "a or b", "a, b or c" ("registered" when there is none)."""
    if not names:
        return "registered"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
