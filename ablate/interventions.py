"""Named interventions on the states of a Matrix Thinker, and the conditions built from them.

An intervention is plain data (a TOML table): a registered ``name``, a ``site`` (an alias
of ``ablate.model.hooks``: ``head_input`` (default), ``pre_norm``, ``embed``, ``iter.t``,
``iter.t.layer.l``, ``iter.*``) and its parameters. A ``Condition`` is an ordered tuple of
interventions applied together, with the canonical label and the schema fields the
results store writes (``intervention``, ``site``, ``k``, ``draw``). ``expand_conditions``
turns a list of tables into conditions, expanding ``k`` lists and random ``draws``:

    >>> conditions = expand_conditions(
    ...     [{"name": "svd_rank_k", "k": [1, 4]}, {"name": "random_rank_k", "k": 4, "draws": 2}],
    ...     d=8, n_layers=2)
    >>> [c.label for c in conditions]   # doctest: +NORMALIZE_WHITESPACE
    ['none', 'svd_rank_k@head_input:k=1', 'svd_rank_k@head_input:k=4',
     'random_rank_k@head_input:k=4:draw=0', 'random_rank_k@head_input:k=4:draw=1']
    >>> with model.hooks(conditions[1].hooks(eval_seed=0)):   # doctest: +SKIP
    ...     logits = model(ids, n_iterations=8).logits

Table keys: ``name``; ``site``; the kind's parameters (``ablate.intervention_kinds``):
``k`` (int or list); for ``random_rank_k`` ``draws`` (count, draws 0..n-1) or ``draw`` (int or
list) and ``side`` ("columns": Q Qᵀ M, or "rows": M Q Qᵀ); ``norm_matched`` (rescale each
projected matrix to its original Frobenius norm); ``keep_k`` ("<= d" or "< d": leave out
the k of the list that the checkpoint's d does not admit, instead of refusing k > d, so one
k ladder serves checkpoints of several d); ``compose`` (a list of tables applied in that
order, expanded as a product) instead of a name. ``{name = "none"}`` is the unablated
condition.

A kind is registered in one place, with its parameters and its role in the statistics (the
ablation under test, or the control of one), and reaches the statistics and the report
with no other edit:

    >>> @register_intervention("zero_top_k", "zero the top k singular values",
    ...                        (Param("k", minimum=1, grid=True),))  # doctest: +SKIP
    ... def _zero_top_k(intervention, X, eval_seed, basis): ...
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError, did_you_mean
from ablate.intervention_kinds import (
    INTERVENTIONS,
    NONE,
    InterventionKind,
    Param,
    Role,
    arm_kind,
    available_interventions,
    control_of,
    expand_settings,
    get_intervention,
    register_intervention,
    settings_label,
    unregister_intervention,
)
from ablate.sites import LATENT_SITE, SIDES, hook_names, is_latent_site, resolve_site

if TYPE_CHECKING:  # torch is imported where matrices are projected, so that checking a
    import torch  # config (ablate validate --no-checkpoints) never loads it

    from ablate.model.hooks import HookFn
    from ablate.projections import LowRankBasis

__all__ = [
    "AFTER_BACKBONE", "DEFAULT_SITE", "INTERVENTIONS", "NONE", "UNABLATED", "Condition",
    "Intervention", "InterventionKind", "Param", "Role", "arm_kind", "available_interventions",
    "canonical_site", "check_sites_fire", "control_of", "expand_conditions", "get_intervention",
    "make_condition", "rank_identity", "register_intervention", "unfired_part",
    "unregister_intervention", "validate_conditions",
]

logger = logging.getLogger(__name__)

DEFAULT_SITE = "head_input"
# Hook names back to the alias written in labels, so "head.hook_in" and "head_input"
# give one canonical label.
_ALIAS_OF = {"head.hook_in": "head_input", "final_norm.hook_in": "pre_norm",
             "embed.hook_out": "embed"}
_ITER_HOOK = re.compile(r"^iter\.(\d+|\*)(\.layer\.(\d+|\*))?\.hook_out$")
# Sites whose interventions act after the thinking blocks, so one backbone pass can serve
# every condition made only of them (see ablate.evaluation.shared_backbone).
AFTER_BACKBONE = ("final_norm.hook_in", "head.hook_in")

def rank_identity(intervention: Intervention, d: int) -> str | None:
    """A rank-k projection with k >= d projects onto the whole space."""
    k = intervention.k
    return f"k={k} >= d={d}" if k is not None and k >= d else None


K = Param("k", minimum=1, grid=True, hint="k >= d keeps the input, k < 1 is not a rank")
DRAW = Param("draw", default=0, minimum=0, grid=True, count="draws")
SIDE = Param("side", str, default="columns", choices=SIDES)
NORM_MATCHED = Param("norm_matched", bool, default=False)


def _svd_spectrum(
    intervention: Intervention, X: torch.Tensor, eval_seed: int, basis: LowRankBasis | None
) -> torch.Tensor:
    """The best rank-k approximation keeps the top k singular values."""
    from ablate.projections import decompose

    return (basis if basis is not None else decompose(X)).singular_values[..., :intervention.k]


def _random_spectrum(
    intervention: Intervention, X: torch.Tensor, eval_seed: int, basis: LowRankBasis | None
) -> torch.Tensor:
    """Q Qᵀ X has the singular values of Qᵀ X (k x n); X Q Qᵀ those of X Q (m x k).
    The small product is rounded to float32 so that its spectrum takes the k x k Gram
    route of ``ablate.rank`` (float64 LAPACK SVD of it would cost more than the cut)."""
    import torch

    from ablate.rank import singular_values

    Q = _subspace(eval_seed, intervention.draw or 0, intervention.k, X.shape[-1],
                  intervention.side).to(X.device)
    with torch.autocast(device_type=X.device.type, enabled=False):
        X64 = X.to(torch.float64)
        small = Q.mT @ X64 if intervention.side == "columns" else X64 @ Q
    return singular_values(small.to(torch.float32))


@register_intervention(
    "svd_rank_k", "best rank-k approximation of each matrix (Eckart-Young)",
    (K, NORM_MATCHED), uses_basis=True, identity=rank_identity, short="SVD",
    display="SVD top-k", spectrum=_svd_spectrum,
)
def _svd_rank_k(
    intervention: Intervention, X: torch.Tensor, eval_seed: int, basis: LowRankBasis | None
) -> torch.Tensor:
    from ablate.projections import decompose, svd_project

    return svd_project(basis if basis is not None else decompose(X), intervention.k)


@register_intervention(
    "random_rank_k",
    "orthogonal projection onto a Haar-random k-dim subspace seeded by (eval seed, draw, k)",
    (K, DRAW, SIDE, NORM_MATCHED), role=control_of("svd_rank_k", matched_on=("k",)),
    identity=rank_identity, short="random", display="random rank-k",
    spectrum=_random_spectrum,
)
def _random_rank_k(
    intervention: Intervention, X: torch.Tensor, eval_seed: int, basis: LowRankBasis | None
) -> torch.Tensor:
    from ablate.projections import random_project

    Q = _subspace(eval_seed, intervention.draw or 0, intervention.k, X.shape[-1],
                  intervention.side)
    return random_project(X, Q, intervention.side)


@lru_cache(maxsize=256)
def _subspace(eval_seed: int, draw: int, k: int, d: int, side: str) -> torch.Tensor:
    """(d, k) float64 on CPU; one subspace per condition, shared by every token and item."""
    from ablate.projections import draw_generator, random_subspace

    return random_subspace(d, k, generator=draw_generator(eval_seed, draw, k), side=side)


def canonical_site(site: str, n_layers: int | None = None) -> str:
    """The alias used in labels for ``site`` ("head.hook_in" -> "head_input")."""
    name = resolve_site(site, n_layers)
    if name in _ALIAS_OF:
        return _ALIAS_OF[name]
    if is_latent_site(name):
        return LATENT_SITE if name == f"{LATENT_SITE}.*" else name
    m = _ITER_HOOK.match(name)
    if m:
        return f"iter.{m.group(1)}" + (f".layer.{m.group(3)}" if m.group(2) else "")
    return name


@dataclass(frozen=True, init=False)
class Intervention:
    """One intervention at one site with its settings (``Intervention("random_rank_k",
    k=2, draw=1)``): each parameter of the kind, defaults filled in. The site is stored in
    its canonical alias form; ``k``, ``draw``, ``side`` and ``norm_matched`` read the
    settings (None, None, "columns", False where the kind has no such parameter)."""

    name: str
    site: str
    setting_items: tuple[tuple[str, Any], ...]

    def __init__(self, name: str, site: str = DEFAULT_SITE, **settings: Any) -> None:
        kind = get_intervention(name)
        given = {key: value for key, value in settings.items() if value is not None}
        where = f"{name}@{site}" + "".join(f":{key}={value}" for key, value in given.items())
        for key, value in given.items():
            if key not in kind.param_names:
                raise AblateError(f"{name} takes no {key} (got {key}={value}); remove it")
        values = []
        for param in kind.params:
            if param.name in given:
                value = param.check(given[param.name], where)
            elif param.required:
                raise AblateError(f"{where}: needs {param.name} ({param.shape(listed=False)})")
            else:
                value = param.default
            values.append((param.name, value))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "site", canonical_site(site))
        object.__setattr__(self, "setting_items", tuple(values))

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.setting_items)

    @property
    def k(self) -> int | None:
        return self.settings.get("k")

    @property
    def draw(self) -> int | None:
        return self.settings.get("draw")

    @property
    def side(self) -> str:
        return self.settings.get("side", "columns")

    @property
    def norm_matched(self) -> bool:
        return bool(self.settings.get("norm_matched", False))

    @property
    def kind(self) -> InterventionKind:
        return get_intervention(self.name)

    @property
    def hook_name(self) -> str:
        """The hook name or pattern the model fires it at."""
        return resolve_site(self.site)

    @property
    def variant(self) -> str:
        """Label suffix of the settings that are not record columns (":side=rows",
        ":norm_matched"): part of the record's ``intervention`` field."""
        return settings_label(self.kind.params, self.settings, record=False)

    @property
    def label(self) -> str:
        return f"{self.name}@{self.site}{settings_label(self.kind.params, self.settings)}"

    def identity_reason(self, d: int) -> str | None:
        """Why the matrices pass unchanged (e.g. "k=4 >= d=4"), or None."""
        identity = self.kind.identity
        return None if identity is None else identity(self, d)

    def is_identity(self, d: int) -> bool:
        """Whether the matrices pass unchanged (k >= d for rank-k projections)."""
        return self.identity_reason(d) is not None

    def apply(
        self, X: torch.Tensor, eval_seed: int, basis: LowRankBasis | None = None
    ) -> torch.Tensor:
        """The ablated batch (..., d, d), same dtype as X, computed in float32 or better
        with autocast off. ``basis`` = ``decompose(X)`` shared between conditions."""
        import torch

        from ablate.projections import norm_matched

        if self.is_identity(X.shape[-1]):
            return X
        with torch.autocast(device_type=X.device.type, enabled=False):
            work = X if X.dtype in (torch.float32, torch.float64) else X.float()
            projected = self.kind.project(self, work, eval_seed, basis)
            if self.norm_matched:
                projected = norm_matched(projected, work)
        return projected.to(X.dtype)


@dataclass(frozen=True)
class Condition:
    """An ordered set of interventions applied together, with its record fields.

    ``label`` is canonical ("none", "svd_rank_k@head_input:k=4", composed labels joined by
    "+"); ``intervention``/``site`` join the parts by "+"; ``k``/``draw`` are set when every
    part agrees. ``identity`` is True when nothing changes (unablated, or k >= d throughout).
    """

    label: str
    interventions: tuple[Intervention, ...] = ()
    intervention: str = NONE
    site: str = NONE
    k: int | None = None
    draw: int | None = None
    identity: bool = False
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def after_backbone(self) -> bool:
        """Every part acts at pre_norm or head_input (one backbone pass serves it)."""
        return all(i.hook_name in AFTER_BACKBONE for i in self.interventions)

    def record_fields(self) -> dict[str, Any]:
        """The condition columns of a per-item record."""
        return {"condition": self.label, "intervention": self.intervention,
                "site": self.site, "k": self.k, "draw": self.draw}

    def hooks(self, eval_seed: int) -> dict[str, HookFn]:
        """``{hook name or pattern: fn}`` for ``model.hooks``; parts at one site run in
        list order inside one function. An identity part (k >= d) returns its input
        tensor itself, so it leaves the model's outputs bit-identical."""
        by_site: dict[str, list[Intervention]] = {}
        for intervention in self.interventions:
            by_site.setdefault(intervention.hook_name, []).append(intervention)
        return {site: _hook_fn(tuple(parts), eval_seed) for site, parts in by_site.items()}

    def apply_at(self, hook_name: str, X: torch.Tensor, eval_seed: int,
                 basis: LowRankBasis | None = None) -> torch.Tensor:
        """Apply this condition's parts at ``hook_name`` to X in order; ``basis`` (of X)
        serves the first part only, since later parts see an already ablated X."""
        for i, part in enumerate(p for p in self.interventions if p.hook_name == hook_name):
            X = part.apply(X, eval_seed, basis if i == 0 else None)
        return X


def _hook_fn(parts: tuple[Intervention, ...], eval_seed: int) -> HookFn:
    def hook(X: torch.Tensor, name: str) -> torch.Tensor:
        for part in parts:
            X = part.apply(X, eval_seed)
        return X

    return hook


UNABLATED = Condition(label=NONE, identity=True)


def make_condition(interventions: Sequence[Intervention], d: int | None = None) -> Condition:
    """The condition applying ``interventions`` in order (empty: unablated)."""
    if not interventions:
        return UNABLATED
    parts = tuple(interventions)
    reasons = [(p, p.identity_reason(d)) for p in parts if d is not None]
    identity_parts = [(p, reason) for p, reason in reasons if reason is not None]
    ks = {p.k for p in parts if p.k is not None}
    draws = {p.draw for p in parts if p.draw is not None}
    return Condition(
        label="+".join(p.label for p in parts),
        interventions=parts,
        intervention="+".join(p.name + p.variant for p in parts),
        site="+".join(dict.fromkeys(p.site for p in parts)),
        k=ks.pop() if len(ks) == 1 else None,
        draw=draws.pop() if len(draws) == 1 else None,
        identity=len(identity_parts) == len(parts),
        notes=tuple(f"{reason}: {p.label} is the identity" for p, reason in identity_parts),
    )


# --- expansion of TOML tables ----------------------------------------------------------

_BASE_KEYS = ("name", "site")
# keep_k: which k of a list a checkpoint of size d admits.
KEEP_K = {"<= d": lambda k, d: k <= d, "< d": lambda k, d: k < d}


def expand_conditions(
    spec: Sequence[Mapping[str, Any]], *, d: int, n_layers: int, include_unablated: bool = True
) -> list[Condition]:
    """Conditions of ``spec`` (list of tables), unablated first when ``include_unablated``.

    Raises ``AblateError`` for unknown names, keys or sites, k < 1, and duplicate labels.
    A k >= d is the identity: logged, and flagged in ``Condition.identity``.
    """
    conditions = _expand(spec, d=d, n_layers=n_layers, include_unablated=include_unablated)
    for condition in conditions:
        for note in condition.notes:
            logger.info("%s (condition %s)", note, condition.label)
    return conditions


def validate_conditions(
    spec: Sequence[Mapping[str, Any]],
    *,
    d: int | None = None,
    n_layers: int | None = None,
    n_iterations: int | None = None,
) -> list[Condition]:
    """Check ``spec`` without a model (for ``ablate validate``) and return its conditions.

    With ``n_iterations`` (and ``n_layers``), also checks that every site fires in a
    forward pass of that many iterations.
    """
    conditions = _expand(spec, d=d, n_layers=n_layers, include_unablated=True)
    if n_iterations is not None:
        if n_layers is None:  # enough layers for every layer the sites name
            named = [int(x) for c in conditions for p in c.interventions
                     for x in re.findall(r"layer\.(\d+)", p.hook_name)]
            n_layers = max(named, default=0) + 1
        check_sites_fire(conditions, n_iterations=n_iterations, n_layers=n_layers)
    return conditions


def check_sites_fire(conditions: Sequence[Condition], *, n_iterations: int, n_layers: int) -> None:
    """Raise if a site never fires with T = ``n_iterations`` (e.g. iter.5 when T = 3): its
    condition would silently equal the unablated one."""
    names = hook_names(n_iterations, n_layers)
    for condition in conditions:
        part = unfired_part(condition, names)
        if part is not None and is_latent_site(part.site):
            raise AblateError(
                f"condition '{condition.label}': site '{part.site}' is a latent thought of a "
                "CODI model; it acts on checkpoints with model = \"codi\" only")
        if part is not None:
            raise AblateError(
                f"condition '{condition.label}': site '{part.site}' never fires with "
                f"n_iterations={n_iterations} and {n_layers} layers; use iterations "
                f"1..{n_iterations} or remove the condition"
            )


def unfired_part(condition: Condition, names: Sequence[str]) -> Intervention | None:
    """The first part of ``condition`` whose site matches none of the hook points
    ``names`` (so it would never act), else None."""
    for part in condition.interventions:
        if not any(fnmatchcase(name, part.hook_name) for name in names):
            return part
    return None


def _expand(
    spec: Sequence[Mapping[str, Any]], *, d: int | None, n_layers: int | None,
    include_unablated: bool,
) -> list[Condition]:
    if isinstance(spec, Mapping) or not isinstance(spec, Sequence):
        raise AblateError(
            f"interventions must be a list of tables, got {type(spec).__name__}; write "
            '[[interventions]] tables, e.g. {name = "svd_rank_k", k = [1, 2, 4]}'
        )
    conditions = [UNABLATED] if include_unablated else []
    seen = {c.label for c in conditions}
    for index, entry in enumerate(spec):
        where = f"interventions[{index}]"
        for parts in _expand_entry(entry, where, n_layers, d):
            condition = make_condition(parts, d)
            if condition.label in seen:
                if condition is UNABLATED:
                    continue
                raise AblateError(
                    f"{where}: condition '{condition.label}' is listed twice; remove the duplicate"
                )
            _check_disjoint_sites(condition, where, n_layers)
            seen.add(condition.label)
            conditions.append(condition)
    return conditions


def _expand_entry(entry: Any, where: str, n_layers: int | None,
                  d: int | None) -> list[tuple[Intervention, ...]]:
    if not isinstance(entry, Mapping):
        raise AblateError(f"{where} must be a table with a 'name', got {entry!r}")
    if "compose" in entry:
        extra = sorted(set(entry) - {"compose"})
        steps = entry["compose"]
        if extra or not isinstance(steps, list) or not steps:
            raise AblateError(
                f"{where}: a 'compose' table holds only a non-empty list of intervention "
                f"tables (got keys {sorted(entry)}); move {extra or 'the settings'} into the steps"
            )
        options = [_expand_entry(step, f"{where}.compose[{i}]", n_layers, d)
                   for i, step in enumerate(steps)]
        for i, choices in enumerate(options):
            if choices == [()]:
                raise AblateError(f"{where}.compose[{i}]: 'none' cannot be composed; remove it")
        return [tuple(itertools.chain(*combo)) for combo in itertools.product(*options)]
    if "name" not in entry:
        raise AblateError(f"{where}: missing 'name'; one of {', '.join(available_interventions())}")
    name = entry["name"]
    if name == NONE:
        if set(entry) != {"name"}:
            raise AblateError(f"{where}: the 'none' condition takes no settings; remove "
                              f"{sorted(set(entry) - {'name'})}")
        return [()]
    kind = get_intervention(str(name))
    allowed = _BASE_KEYS + (("keep_k",) if "k" in kind.param_names else ()) + kind.keys
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise AblateError(
            f"{where}: unknown key(s) {', '.join(unknown)} for '{name}'."
            f"{did_you_mean(unknown[0], allowed)} Allowed: {', '.join(allowed)}"
        )
    site = entry.get("site", DEFAULT_SITE)
    if not isinstance(site, str):
        raise AblateError(f"{where}: site must be a string such as 'head_input', got {site!r}")
    try:
        site = canonical_site(site, n_layers)
    except AblateError as err:
        raise AblateError(f"{where}: {err}") from None
    grid = [dict(settings) for settings in expand_settings(kind.params, entry, where,
                                                            kind=str(name))]
    if "keep_k" in entry:
        keep = entry["keep_k"]
        if keep not in KEEP_K:
            raise AblateError(f"{where}: keep_k must be one of {', '.join(map(repr, KEEP_K))}, "
                              f"got {keep!r}")
        grid = [s for s in grid if d is None or KEEP_K[keep](s["k"], d)]
    return [(Intervention(str(name), site, **settings),) for settings in grid]


def _check_disjoint_sites(condition: Condition, where: str, n_layers: int | None) -> None:
    """Two different site patterns that match one hook name (iter.* and iter.2) would run
    in dict order rather than list order, so a condition may not mix them."""
    patterns = list(dict.fromkeys(p.hook_name for p in condition.interventions))
    if len(patterns) < 2:
        return
    explicit = [int(x) for p in patterns for x in re.findall(r"iter\.(\d+)", p)] or [1]
    names = hook_names(max(explicit) + 1, n_layers or 2)
    for a, b in itertools.combinations(patterns, 2):
        overlap = [n for n in names if fnmatchcase(n, a) and fnmatchcase(n, b)]
        if overlap:
            raise AblateError(
                f"{where}: condition '{condition.label}' acts at overlapping sites "
                f"('{a}' and '{b}' both fire at {overlap[0]}), so their order is ambiguous; "
                "compose interventions at disjoint sites or at one site"
            )
