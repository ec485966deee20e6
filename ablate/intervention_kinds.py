"""The registry of intervention kinds: each kind's parameters (how the keys of an
``[[interventions]]`` table become a grid of settings, and how settings are written in
condition labels) and its role in the statistics (the ablation under test, or a control of
one). ``ablate.interventions`` registers the built-in kinds and re-exports all of this:
import that module to read the registry.

Plain data, read without torch, so ``ablate validate --no-checkpoints``, ``ablate stats``
and ``ablate report`` stay light:

    >>> K = Param("k", minimum=1, grid=True, hint="k >= d keeps the input, k < 1 is not a rank")
    >>> DRAW = Param("draw", default=0, minimum=0, grid=True, count="draws")
    >>> [dict(s) for s in expand_settings((K, DRAW), {"k": [1, 2], "draws": 2}, "t")][:2]
    [{'k': 1, 'draw': 0}, {'k': 1, 'draw': 1}]
    >>> settings_label((K, DRAW), {"k": 4, "draw": 3})
    ':k=4:draw=3'
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError, unknown_name_error

if TYPE_CHECKING:
    import torch

    from ablate.interventions import Intervention
    from ablate.projections import LowRankBasis

NONE = "none"  # the unablated condition's name

# Settings that are columns of a per-item record (ablate.store); every other setting is
# written into the record's ``intervention`` field (e.g. "random_rank_k:side=rows").
RECORD_SETTINGS = ("k", "draw")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
_SHAPES = {int: "an integer", bool: "true or false", str: "a string", float: "a number"}


@dataclass(frozen=True)
class Param:
    """One setting of an intervention kind.

    ``type`` is int, float, bool or str; ``default`` is REQUIRED when the table must give
    it; ``grid`` lets a list of values expand into one intervention per value (``k = [1, 2,
    4]``); ``count`` names a second key that gives a count n instead, meaning values
    0..n-1 (``draws = 3`` for draw 0, 1, 2; default one value, ``default``); ``minimum``
    bounds numbers; ``choices`` lists the allowed strings; ``hint`` ends a range error.
    """

    name: str
    type: type = int
    default: Any = REQUIRED
    grid: bool = False
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    count: str | None = None
    hint: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def keys(self) -> tuple[str, ...]:
        """The table keys this parameter reads."""
        return (self.name,) + ((self.count,) if self.count else ())

    def shape(self, *, listed: bool) -> str:
        """"an integer >= 1 or a list of them", for errors."""
        text = _SHAPES.get(self.type, self.type.__name__)
        if self.minimum is not None:
            text += f" >= {self.minimum:g}"
        if self.choices:
            text = f"one of {', '.join(self.choices)}"
        return text + (" or a list of them" if listed else "")

    def check(self, value: Any, where: str) -> Any:
        """``value`` if it is a valid single value, else a one-line AblateError."""
        if self.choices:
            if value not in self.choices:
                raise AblateError(f"{where}: {self.name} must be one of "
                                  f"{', '.join(self.choices)}, got {value!r}")
            return value
        valid = (isinstance(value, bool) if self.type is bool else
                 isinstance(value, (int, float)) and not isinstance(value, bool)
                 if self.type is float else
                 isinstance(value, self.type) and not isinstance(value, bool)
                 if self.type is int else isinstance(value, self.type))
        if valid and self.minimum is not None and value < self.minimum:
            valid = False
        if not valid:
            if self.type is bool:
                raise AblateError(f"{where}: {self.name} must be true or false, got {value!r}")
            raise self._range_error(value, where, listed=False)
        return value

    def values(self, entry: Mapping[str, Any], where: str, kind: str = "") -> list[Any]:
        """The values a table gives this parameter: one, a grid axis (a list, or 0..n-1
        from the count key), or the default; errors name ``where`` (and ``kind``)."""
        if self.count and self.count in entry and self.name in entry:
            raise AblateError(f"{where}: give '{self.count}' (a count) or '{self.name}' "
                              "(indices), not both")
        if self.count and self.name not in entry:
            count = Param(self.count, minimum=1).check(entry.get(self.count, 1), where)
            return list(range(count))
        if self.name not in entry:
            if self.required:
                owner = f"'{kind}' " if kind else ""
                raise AblateError(f"{where}: {owner}needs {self.name} "
                                  f"({self.shape(listed=self.grid)})")
            return [self.default]
        value = entry[self.name]
        if not (self.grid and isinstance(value, list)):
            if self.grid and not self.choices and self.type is not bool:
                self._check_listed(value, where)
            return [self.check(value, where)]
        if not value:
            raise self._range_error(value, where, listed=True)
        for item in value:
            self._check_listed(item, where, shown=value)
        if len(set(value)) != len(value):
            raise AblateError(f"{where}: {self.name} lists {value!r} with repeats; list each "
                              "value once")
        return list(value)

    def _check_listed(self, value: Any, where: str, shown: Any = None) -> None:
        try:
            self.check(value, where)
        except AblateError:
            raise self._range_error(value if shown is None else shown, where,
                                    listed=True) from None

    def _range_error(self, value: Any, where: str, *, listed: bool) -> AblateError:
        shape = self.shape(listed=False)
        if listed:
            shape = shape.replace("an integer", "an integer or a list of integers", 1)
        return AblateError(f"{where}: {self.name} must be {shape}, got {value!r}"
                           + (f"; {self.hint}" if self.hint else ""))


def expand_settings(params: Sequence[Param], entry: Mapping[str, Any], where: str,
                    kind: str = "") -> list[tuple[tuple[str, Any], ...]]:
    """The grid of settings a table gives (product of the grid axes, in parameter order),
    each as ((name, value), ...) in parameter order."""
    axes = [param.values(entry, where, kind) for param in params]
    names = [param.name for param in params]
    return [tuple(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


def setting_text(param: Param, value: Any) -> str:
    """A setting as labels write it: grid values always (":k=4"), a true flag as its name
    (":norm_matched"), other settings only when they differ from the default
    (":side=rows")."""
    if param.grid:
        return f":{param.name}={value}"
    if param.type is bool:
        return f":{param.name}" if value else ""
    return "" if value == param.default else f":{param.name}={value}"


def settings_label(params: Sequence[Param], settings: Mapping[str, Any], *,
                   record: bool | None = None) -> str:
    """The label suffix of ``settings``: the record settings (k, draw) first, then the
    others, each in parameter order. ``record`` True/False keeps only those / the others."""
    ordered = ([p for p in params if p.name in RECORD_SETTINGS]
               + [p for p in params if p.name not in RECORD_SETTINGS])
    return "".join(setting_text(p, settings[p.name]) for p in ordered
                   if p.name in settings
                   and (record is None or (p.name in RECORD_SETTINGS) == record))


def parse_variant(params: Sequence[Param], variant: str) -> dict[str, Any] | None:
    """The settings a variant suffix writes (":side=rows:norm_matched" -> {"side": "rows",
    "norm_matched": True}), defaults for the rest of the non-record settings; None when the
    text does not parse as settings of these parameters."""
    by_name = {p.name: p for p in params if p.name not in RECORD_SETTINGS}
    settings = {name: p.default for name, p in by_name.items()}
    for part in filter(None, variant.split(":")):
        name, _, text = part.partition("=")
        param = by_name.get(name)
        if param is None:
            return None
        if param.type is bool:
            settings[name] = True
            continue
        try:
            settings[name] = param.type(text)
        except ValueError:
            return None
    return settings


ROLES = ("ablation", "control")


@dataclass(frozen=True)
class Role:
    """What a kind is in the statistics: ``"ablation"`` (the intervention under test: its
    trend over k, its levels), or ``"control"`` of the ablation kind ``of``, compared with it
    at equal values of the ``matched_on`` settings (e.g. random_rank_k controls svd_rank_k
    at each k)."""

    name: str
    of: str | None = None
    matched_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert self.name in ROLES, f"role must be one of {ROLES}, got {self.name!r}"
        assert (self.of is not None) == (self.name == "control"), "a control names its ablation"


ABLATION = Role("ablation")


def control_of(ablation: str, *, matched_on: Sequence[str] = ("k",)) -> Role:
    """The role of a control of the kind ``ablation``, matched on ``matched_on``."""
    return Role("control", ablation, tuple(matched_on))


# --- the registry -------------------------------------------------------------------

ProjectFn = Callable[["Intervention", "torch.Tensor", int, "LowRankBasis | None"],
                     "torch.Tensor"]
# (intervention, d) -> why it leaves every d x d matrix unchanged ("k=4 >= d=4"), or None.
IdentityFn = Callable[["Intervention", int], "str | None"]


@dataclass(frozen=True)
class InterventionKind:
    """A registered intervention: ``project(intervention, X, eval_seed, basis)`` maps a
    float32 batch (..., d, d) to its ablated version; ``basis`` is an optional precomputed
    ``projections.decompose(X)``. ``params`` are its settings (table keys, defaults, grid
    axes); ``role`` its part in the statistics; ``identity`` says when it changes nothing;
    ``short`` and ``display`` name it in the report's sentences ("SVD") and legends ("SVD
    top-k"). ``spectrum`` (same arguments as ``project``), when registered, gives the
    singular values (..., r) float64 of the ablated matrices up to a positive factor per
    matrix, cheaper than decomposing them (the evaluation records their effective rank
    for every condition)."""

    name: str
    summary: str
    params: tuple[Param, ...]
    project: ProjectFn
    uses_basis: bool = False
    role: Role = ABLATION
    identity: IdentityFn | None = None
    short: str = ""
    display: str = ""
    spectrum: ProjectFn | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """The table keys its parameters read (e.g. draw and draws)."""
        return tuple(key for param in self.params for key in param.keys)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(param.name for param in self.params)

    @property
    def short_name(self) -> str:
        return self.short or self.name

    @property
    def display_name(self) -> str:
        return self.display or self.short_name


INTERVENTIONS: dict[str, InterventionKind] = {}


def register_intervention(
    name: str, summary: str, params: Sequence[Param], *, uses_basis: bool = False,
    role: Role = ABLATION, identity: IdentityFn | None = None, short: str = "",
    display: str = "", spectrum: ProjectFn | None = None,
) -> Callable[[ProjectFn], ProjectFn]:
    """Decorator registering ``project`` under ``name`` (names are unique; a control's
    ablation is registered first and has every ``matched_on`` parameter)."""

    def add(project: ProjectFn) -> ProjectFn:
        if name in INTERVENTIONS or name == NONE or not re.fullmatch(r"\w+", name):
            raise ValueError(f"intervention name {name!r} is taken or not a plain identifier")
        if role.of is not None:
            ablation = INTERVENTIONS.get(role.of)
            if ablation is None or ablation.role.name != "ablation":
                raise ValueError(f"{name}: controls {role.of!r}, which is not a registered "
                                 "ablation; register that first")
            missing = [m for m in role.matched_on if m not in ablation.param_names
                       or m not in (p.name for p in params)]
            if missing:
                raise ValueError(f"{name}: matched on {missing}, which {role.of} and {name} "
                                 "must both take")
        INTERVENTIONS[name] = InterventionKind(name, summary, tuple(params), project,
                                               uses_basis, role, identity, short, display,
                                               spectrum)
        return project

    return add


def unregister_intervention(name: str) -> InterventionKind:
    """Remove a registered kind (for tests and plugins that register kinds temporarily)."""
    return INTERVENTIONS.pop(name)


def available_interventions() -> list[str]:
    return sorted([NONE, *INTERVENTIONS])


def get_intervention(name: str) -> InterventionKind:
    if name not in INTERVENTIONS:
        raise unknown_name_error("intervention", name, available_interventions())
    return INTERVENTIONS[name]


def arm_kind(intervention: str) -> tuple[InterventionKind, dict[str, Any]] | None:
    """The registered kind and non-record settings of a record's ``intervention`` value
    ("svd_rank_k", "random_rank_k:side=rows"); None for "none", composed values ("a+b")
    and names this process has not registered."""
    name, _, variant = str(intervention).partition(":")
    kind = INTERVENTIONS.get(name)
    if kind is None or "+" in str(intervention):
        return None
    settings = parse_variant(kind.params, variant)
    return None if settings is None else (kind, settings)
