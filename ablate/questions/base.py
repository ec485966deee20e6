"""What a research question is: the ``Question`` interface, the typed entries its analysis
returns, the scopes the analysis walks (a site's outcome, a group, the run), and what its
presentation returns (blocks, table views, figures). ``ablate.questions`` registers the
questions; ``ablate.questions.analysis`` walks the records and calls them.

A question is a subclass that sets ``key`` and ``outputs`` and overrides the hooks it needs:

    >>> class Coverage(Question):  # doctest: +SKIP
    ...     key, outputs, claim_outputs, title = "coverage", ("coverage",), (), "Coverage"
    ...     def at_group(self, group, ctx):
    ...         return [CoverageEntry(**group.key.as_dict(), n_rows=len(group.rows))]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ablate.interventions import Role
from ablate.questions.blocks import Block, TableView
from ablate.stats.claims import Claim, GroupKey
from ablate.stats.frames import SeedItemArray
from ablate.stats.power import minimum_detectable_effect, variance_components

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# A field left out of the JSON form of an entry (e.g. a result object another hook reads).
HIDDEN = {"json": False}


class Entry:
    """A typed analysis entry (a dataclass subclass); ``output`` is the analysis.json key
    whose list it joins. Its JSON form lists its fields in order, except HIDDEN ones."""

    output: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)  # type: ignore[arg-type]
                if f.metadata.get("json", True)}

    @property
    def entry_claims(self) -> list[Claim]:
        return list(getattr(self, "claims", []))


def plain(value: Any) -> Any:
    """Entries, claims and containers of them as JSON-like values (json_ready rounds later)."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


@dataclass
class GroupEntry(Entry):
    """An entry of one group: head (config_label), task, mode and T come first."""

    config_label: str
    task: str
    mode: str
    n_iterations: int

    @property
    def group(self) -> GroupKey:
        return GroupKey(self.config_label, self.task, self.mode, self.n_iterations)


@dataclass(frozen=True)
class RunNote:
    """A run-wide note (analysis.json ``notes``), e.g. an outcome skipped and why."""

    text: str


@dataclass
class VarianceComponent(Entry):
    """Variance components of one per-item quantity behind a claim and its minimum
    detectable effect (analysis.json ``power.variance_components``)."""

    output: ClassVar[str] = "power"
    keys: dict[str, Any]
    quantity: str
    seed: float
    problem: float
    residual: float
    per_seed_sd: float
    n_seeds: int
    n_items: int
    mde_in_seed_sd: float
    mde_in_units: float

    def to_json(self) -> dict[str, Any]:
        record = super().to_json()
        return {**record.pop("keys"), **record}


Finding = Entry | RunNote
ONE_SEED_NOTE = "one seed: description only, no inference across seeds"


def variance_component(keys: Mapping[str, Any], quantity: str, per_item: np.ndarray
                       ) -> VarianceComponent:
    """Variance components and the minimum detectable effect of per-item values (S, n)."""
    components = variance_components(per_item)
    factor = (minimum_detectable_effect(components.n_seeds) if components.n_seeds >= 2
              else float("nan"))
    return VarianceComponent(dict(keys), quantity, components.seed, components.problem,
                             components.residual, components.per_seed_sd,
                             components.n_seeds, components.n_items, factor,
                             factor * components.per_seed_sd)


@dataclass
class AnalysisContext:
    """Settings shared by every question of one analysis, and what earlier hooks found.
    ``dims`` maps a head (config_label) to the matrix size d of its checkpoints, where the
    run recorded it: a rank cut with k >= d keeps the states, so its contrasts are checks."""

    rng: np.random.Generator
    level: float
    n_boot: int
    alpha: float
    tost_margin: float | None
    dims: Mapping[str, int] = field(default_factory=dict)
    found: dict[str, list[Entry]] = field(default_factory=dict)
    variance: list[VarianceComponent] = field(default_factory=list)

    @property
    def options(self) -> dict[str, Any]:
        """Keyword arguments of the interval functions (rng, level, n_boot)."""
        return {"rng": self.rng, "level": self.level, "n_boot": self.n_boot}

    def entries(self, output: str) -> list[Entry]:
        """Entries found so far under an analysis.json key."""
        return self.found.get(output, [])


@dataclass(frozen=True)
class Arm:
    """The rows of one registered intervention at one site, by k (None for a kind without
    k): a ``SeedItemArray`` (n_seeds, n_items) per k for an ablation, a ``DrawArray``
    (n_seeds, n_draws, n_items) for a control. ``name`` is the records' ``intervention``
    value ("svd_rank_k", "random_rank_k:side=rows"), ``settings`` its non-record settings."""

    name: str
    kind: str
    role: Role
    settings: Mapping[str, Any]
    arrays: Mapping[int | None, Any]
    short: str
    display: str

    @property
    def ks(self) -> list[int]:
        return [k for k in self.arrays if k is not None]

    def controlled_by(self, control: Arm) -> bool:
        """Whether ``control`` is a control of this ablation arm: its kind controls this
        kind, and the settings both kinds have agree (e.g. norm_matched)."""
        shared = set(self.settings) & set(control.settings)
        return (control.role.name == "control" and control.role.of == self.kind
                and all(self.settings[name] == control.settings[name] for name in shared))


@dataclass(frozen=True)
class SiteOutcome:
    """One outcome at one site of one group, with every arm's arrays aligned on the same
    seeds and items, in the outcome's unit after ``scale``. For bits per byte (a ratio of
    sums) the arrays hold solution_nats and ``n_bytes`` (n_seeds, n_items) the denominator."""

    group: GroupKey
    site: str
    outcome: str
    unit: str
    scale: float
    arms: tuple[Arm, ...]
    plain: SeedItemArray | None  # unablated rows
    reference: SeedItemArray  # the first arm's first k: seeds and items of every array
    n_bytes: np.ndarray | None = None

    @property
    def keys(self) -> dict[str, Any]:
        return {**self.group.as_dict(), "site": self.site}

    def ablations(self) -> list[Arm]:
        return [arm for arm in self.arms if arm.role.name == "ablation"]

    def controls_of(self, ablation: Arm) -> list[Arm]:
        return [arm for arm in self.arms if ablation.controlled_by(arm)]


@dataclass(frozen=True)
class GroupRows:
    """The records of one group (head x task x mode x T), its unablated rows, and the sites
    its ablations act at."""

    key: GroupKey
    rows: pd.DataFrame
    unablated: pd.DataFrame
    sites: tuple[str, ...]


# --- presentation ----------------------------------------------------------------------

@dataclass(frozen=True)
class Evidence:
    """What a question's presentation reads: the analysis (JSON form), the run's records,
    the interval settings, and the registered questions."""

    analysis: Mapping[str, Any]
    records: pd.DataFrame
    level: float
    n_boot: int
    seed: int
    questions: tuple[Question, ...] = ()


@dataclass(frozen=True)
class FigureSpec:
    """A figure to draw: ``draw()`` returns (fig, axes) and never saves. ``name`` identifies
    the figure within its question (specs of one name form one numbered figure, lettered
    by scope); the report numbers figures in order of appearance."""

    name: str
    title: str
    scope: str  # "" for run-wide figures
    caption: str
    draw: Callable[[], tuple[Figure, np.ndarray]]


@dataclass(frozen=True)
class VerdictRow:
    """One row of the report's verdict table: a headline claim (JSON form) of a question
    for one head (or pair of heads), with what it estimates and in which unit (``what``)
    and where (``scope``: task, mode and T; ``site``: where its ablation acts, if any)."""

    head: str
    what: str
    scope: str
    claim: Mapping[str, Any]
    site: str = ""


@dataclass(frozen=True)
class MissingFigure:
    """A figure the run cannot support, and why; ``number`` is set when the report is
    assembled."""

    name: str
    title: str
    reason: str
    number: int = 0


FigureItem = FigureSpec | MissingFigure


class Question:
    """A research question: its analysis hooks (statistics on the records) and its
    presentation (tables, prose, figures), in one module.

    The analysis walks the records once: for each group (head x task x mode x T), each
    site of its ablations and each outcome there, ``at_site``; then ``at_group`` for the
    group; after every group, ``at_run``. Each hook returns findings (typed entries, run
    notes, variance components); the walk calls every question's hook in registry order.
    ``ctx.entries(key)`` holds what earlier hooks found; ``ctx.rng`` is the question's own
    random stream (derived from the run's seed and its key), so registering a question
    never moves another's bootstrap draws. Claims of ``claim_outputs`` go through Holm
    (within each claim's family) once every hook has run.
    """

    key: ClassVar[str]  # unique registry key
    outputs: ClassVar[tuple[str, ...]]  # analysis.json keys it fills, in order
    claim_outputs: ClassVar[tuple[str, ...]] = ()  # those whose entries carry claims
    title: ClassVar[str | None] = None  # the report section's heading; None: no section
    # Its figure (a FigureSpec name) that answers the question at a glance: the report
    # shows the first question's headline figure next to the verdict table.
    headline_figure: ClassVar[str | None] = None
    needs: ClassVar[str] = ""  # what records need for its claims ("erank_per_iter")
    # The built-in questions draw from the run's one generator in walk order, as they did
    # before the registry existed, which keeps the numbers of earlier analyses.
    shared_stream: ClassVar[bool] = False

    # -- analysis ------------------------------------------------------------------------
    def at_site(self, site: SiteOutcome, ctx: AnalysisContext) -> list[Finding]:
        return []

    def at_group(self, group: GroupRows, ctx: AnalysisContext) -> list[Finding]:
        return []

    def at_run(self, records: pd.DataFrame, ctx: AnalysisContext) -> list[Finding]:
        return []

    def to_json(self, found: Mapping[str, list[Entry]], ctx: AnalysisContext
                ) -> dict[str, Any]:
        """The analysis.json value of each output (default: the list of its entries)."""
        return {key: [entry.to_json() for entry in found.get(key, [])] for key in self.outputs}

    # -- presentation ----------------------------------------------------------------------
    def applies(self, evidence: Evidence) -> bool:
        """Whether the report shows this question at all (e.g. only CODI runs get Q5)."""
        return True

    def section(self, evidence: Evidence) -> list[Block]:
        """The section's heading and prose; figures and tables follow it."""
        return []

    def figures(self, evidence: Evidence) -> list[FigureItem]:
        return []

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        """Compact tables for people (`ablate stats`, the report); empty ones are dropped."""
        return []

    def tables(self, analysis: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Tidy tables for CSV, by name (default: one row per claim of each claim output)."""
        from ablate.questions.tables import claim_rows

        return {key: claim_rows(analysis.get(key, [])) for key in self.claim_outputs}

    def summary(self, analysis: Mapping[str, Any]) -> list[str]:
        """One line per headline claim, for the report's summary."""
        return []

    def verdicts(self, analysis: Mapping[str, Any]) -> list[VerdictRow]:
        """The headline claims (tests, not checks) for the report's verdict table, one row
        per head and claim."""
        return []

    def review_claims(self, analysis: Mapping[str, Any]
                      ) -> Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]]:
        """(entry, claim) pairs whose verdicts the power section reviews."""
        return ((entry, claim) for key in self.claim_outputs for entry in analysis.get(key, [])
                for claim in entry["claims"])
