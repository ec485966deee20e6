"""Experiment files: a TOML grid of checkpoints x tasks x iterations (or numbers of
latents) x eval seeds, each job running every intervention condition over the same items.

An experiment file is data: ``version = 1``, a ``name``, ``[[checkpoints]]`` (path or glob,
train seed, configuration label, ``model``, optional loader overrides),
``[[interventions]]`` (plain tables handed to ``ablate.interventions.expand_conditions``),
``[[tasks]]``, the lists ``eval_seeds`` and ``iterations``, ``batch_size``, ``device`` and a
``[stats]`` table read by the statistics. Unknown keys anywhere are errors. Relative paths
resolve against the file's directory; ``Experiment.resolve()`` expands globs into concrete
checkpoints, and the config hash is taken over that resolved form.
``ablate.grid.expand_jobs`` turns a resolved experiment into its grid of jobs
(``ablate.executors.run_job`` runs one).

Model kinds: a Matrix Thinker (``model = "thinker"``, the default) runs at each T of
``iterations``; a matrix-CODI checkpoint (``model = "codi"``: a native directory, or a
research .pt with ``overrides = {tokenizer, base, n_heads}``) runs with its own T at each
number of latent thoughts of ``n_latents`` (0 = the no-thought baseline), generatively,
with interventions at the sites ``latent`` (every thought) and ``latent.j``. An experiment
holds checkpoints of one kind. CODI study files (``kind = "codi_study"``) load as the
experiment they describe (``ablate.codi.study_file``), with the study's hash and job ids.

    >>> experiment = load_experiment("experiments/quickstart.toml").resolve()  # doctest: +SKIP
    >>> experiment.config_hash()[:12]                                           # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from ablate.codi import study_file
from ablate.config import MODES, Table, check_device_name, config_hash, read_toml
from ablate.errors import AblateError
from ablate.sites import is_latent_site
from ablate.stats.pvalues import MIN_N_BOOT, PRECISE_P_BOOT

VERSION = 1
# Loader settings a checkpoint file cannot tell (spec §3.6), passed to load_checkpoint;
# "tokenizer" is a directory and resolves like every other path. A stated value must agree
# with the checkpoint's own config and sidecar files; assume_research_defaults = true lets
# facts nothing states come from the research script defaults (recorded as assumed).
OVERRIDE_KEYS = ("attention", "n_heads", "variant", "embedding", "embedding_rank", "tokenizer",
                 "assume_research_defaults")
THINKER, CODI = "thinker", "codi"
MODELS = (THINKER, CODI)
# What a research CODI .pt cannot tell: its GPT-2 tokenizer and base config directories and
# (when neither says) the GPT-2 heads; a native CODI directory holds everything.
CODI_OVERRIDE_KEYS = ("tokenizer", "base", "n_heads")
_PATH_OVERRIDES = ("tokenizer", "base")
# Settings that choose where/how fast records are computed or how they are analysed, not
# which records exist: a run may resume with other values, so the hash leaves them out.
UNHASHED_KEYS = ("device", "batch_size", "stats", "description")
_GLOB_CHARS = re.compile(r"[*?\[]")
_SEED_IN_PATH = re.compile(r"seed[-_]?(\d+)", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class CheckpointSpec:
    """One ``[[checkpoints]]`` entry. ``path`` may be a glob; ``train_seed`` may then be
    omitted and is read from "seed<N>" in each matched path."""

    path: str
    label: str
    train_seed: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    model: str = THINKER  # "thinker" | "codi"


@dataclass(frozen=True)
class TaskSpec:
    """One ``[[tasks]]`` entry: ``options`` are the task's own settings (``get_task``);
    ``max_new_tokens`` caps generation (default: the task's; CODI: 16, spec §9);
    ``max_question_tokens`` (CODI) keeps the last N question tokens."""

    name: str
    split: str = "test"
    path: str | None = None
    limit: int | None = None
    mode: str = "teacher_forced"
    few_shot: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    max_new_tokens: int | None = None
    max_question_tokens: int | None = None


@dataclass(frozen=True)
class StatsSettings:
    """``[stats]``: equivalence margin (accuracy as a fraction, 0.02 = 2 pp), interval
    level, bootstrap replicates, the seed of the statistics' random generator, and
    ``smoke``: a smoke run, whose report is not for reporting, may use n_boot < 2000 (the
    protocol's minimum; >= 10 still)."""

    tost_margin: float = 0.02
    level: float = 0.95
    n_boot: int = MIN_N_BOOT
    seed: int = 0
    smoke: bool = False


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file. ``source`` (the file) is not part of the config; it only
    anchors relative paths and names the file in errors."""

    name: str
    checkpoints: tuple[CheckpointSpec, ...]
    tasks: tuple[TaskSpec, ...]
    iterations: tuple[int, ...]
    interventions: tuple[dict[str, Any], ...] = ()
    eval_seeds: tuple[int, ...] = (0,)
    batch_size: int = 16
    device: str = "cpu"
    stats: StatsSettings = field(default_factory=StatsSettings)
    description: str = ""
    version: int = VERSION
    n_latents: tuple[int, ...] = ()  # CODI checkpoints: the grid axis in place of iterations
    source: str = field(default="<memory>", compare=False)
    # The CODI study table this experiment was translated from: it gives the hash and the
    # job ids, so the study's run directories resume (ablate.codi.study_file).
    codi_study: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def model(self) -> str:
        """The checkpoints' model kind (one per experiment)."""
        return self.checkpoints[0].model if self.checkpoints else THINKER

    @property
    def base_dir(self) -> Path:
        """The directory relative paths resolve against (the file's, else the cwd)."""
        path = Path(self.source)
        return path.parent.resolve() if path.is_file() else Path.cwd()

    def to_dict(self) -> dict[str, Any]:
        """The config as TOML-ready data (None values dropped, tuples as lists)."""
        return {
            "version": self.version,
            "name": self.name,
            **({"description": self.description} if self.description else {}),
            "checkpoints": [_drop_none(spec_fields(c)) for c in self.checkpoints],
            "interventions": [dict(i) for i in self.interventions],
            "tasks": [_drop_none(vars(t)) for t in self.tasks],
            "eval_seeds": list(self.eval_seeds),
            **({"n_latents": list(self.n_latents)} if self.model == CODI
               else {"iterations": list(self.iterations)}),
            "batch_size": self.batch_size,
            "device": self.device,
            "stats": dict(vars(self.stats)),
        }

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<memory>") -> Experiment:
        """Parse and check a config mapping; errors name ``source`` and the bad key."""
        return _parse(data, source)

    def manifest_config(self) -> dict[str, Any]:
        """What a run directory's manifest records as the config: ``to_dict()``, plus the
        study table a translated CODI study file held."""
        extra = {"codi_study": self.codi_study} if self.codi_study is not None else {}
        return {**self.to_dict(), **extra}

    def resolve(self, *, limit: int | None = None) -> Experiment:
        """A copy with concrete, absolute checkpoint paths (globs expanded, seeds filled)
        and absolute task paths; ``limit`` caps every task's item count (a translated CODI
        study's, as its runner did, is replaced by it)."""
        if self.codi_study is not None:
            return self._resolve_study(limit)
        checkpoints = tuple(c for spec in self.checkpoints for c in self._resolve_checkpoint(spec))
        seen: dict[tuple[str, int], str] = {}
        for c in checkpoints:
            key = (c.label, c.train_seed)
            if key in seen:
                raise AblateError(
                    f"{self.source}: checkpoints {seen[key]} and {c.path} both have label "
                    f"'{c.label}' and train_seed {c.train_seed}; give each a distinct label or seed"
                )
            seen[key] = c.path
        tasks = []
        for t in self.tasks:
            path = str(self._absolute(t.path)) if t.path is not None else None
            capped = t.limit if limit is None else min(limit, t.limit or limit)
            tasks.append(replace(t, path=path, limit=capped))
        return replace(self, checkpoints=checkpoints, tasks=tuple(tasks))

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the config, without ``UNHASHED_KEYS`` (a
        translated CODI study: the study's own hash). Call it on a resolved experiment so
        the hash pins the checkpoints actually matched."""
        if self.codi_study is not None:
            return study_file.study_hash(self.codi_study)
        return config_hash(self.to_dict(), UNHASHED_KEYS)

    def _resolve_study(self, limit: int | None) -> Experiment:
        assert self.codi_study is not None
        study = study_file.resolve_study(self.codi_study, self.base_dir, limit)
        plain = replace(self, codi_study=None).resolve()
        # The study runner's paths and limit, which its records and hash hold.
        checkpoints = tuple(replace(c, path=study["checkpoint"]["path"])
                            for c in plain.checkpoints)
        tasks = tuple(replace(t, limit=study["task"].get("limit")) for t in plain.tasks)
        return replace(plain, checkpoints=checkpoints, tasks=tasks, codi_study=study)

    def _absolute(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    def _resolve_checkpoint(self, spec: CheckpointSpec) -> list[CheckpointSpec]:
        pattern = os.path.normpath(self._absolute(spec.path))
        if _GLOB_CHARS.search(spec.path):
            paths = sorted(glob.glob(pattern))
            if not paths:
                raise AblateError(
                    f"{self.source}: no checkpoint matches '{spec.path}' (looked for {pattern}); "
                    "put the checkpoints there, fix the path, or check only the file's "
                    "structure with `ablate validate --no-checkpoints`"
                )
            if spec.train_seed is not None and len(paths) > 1:
                raise AblateError(
                    f"{self.source}: train_seed = {spec.train_seed} is set for '{spec.path}', "
                    f"which matches {len(paths)} checkpoints; remove train_seed so each seed "
                    "is read from 'seed<N>' in its path"
                )
        else:
            if not Path(pattern).exists():
                raise AblateError(
                    f"{self.source}: checkpoint {pattern} does not exist; fix the path (relative "
                    "paths start at the experiment file's directory) or create the checkpoint"
                )
            paths = [pattern]
        overrides = dict(spec.overrides)
        for key in _PATH_OVERRIDES:
            if key in overrides:
                overrides[key] = str(self._absolute(overrides[key]))
        return [
            replace(spec, path=str(Path(p).resolve()), train_seed=self._seed_of(spec, p),
                    overrides=overrides)
            for p in paths
        ]

    def _seed_of(self, spec: CheckpointSpec, path: str) -> int:
        if spec.train_seed is not None:
            return spec.train_seed
        found = _SEED_IN_PATH.findall(path)
        if not found:
            raise AblateError(
                f"{self.source}: cannot tell the train seed of {path}: set train_seed in its "
                "[[checkpoints]] entry or put 'seed<N>' in the path"
            )
        return int(found[-1])


def spec_fields(spec: CheckpointSpec | TaskSpec) -> dict[str, Any]:
    """A spec's fields, without those added for CODI while they hold their defaults (so
    every Thinker experiment keeps its hash and job ids)."""
    added = {"model": THINKER, "max_new_tokens": None, "max_question_tokens": None}
    return {key: value for key, value in vars(spec).items()
            if key not in added or value != added[key]}


def is_glob(path: str) -> bool:
    """Whether a checkpoint path is a glob pattern (resolved into several paths)."""
    return _GLOB_CHARS.search(path) is not None


def stats_changes(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """How a ``[stats]`` table differs from the one a run recorded, e.g.
    ``["n_boot 2000 -> 5000"]`` (defaults stand in for a missing table or key)."""
    defaults = vars(StatsSettings())
    before, after = {**defaults, **(recorded or {})}, {**defaults, **current}
    return [f"{key} {before.get(key)} -> {after.get(key)}"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


def read_stats_table(path: str | Path) -> StatsSettings:
    """The ``[stats]`` table of an experiment file alone (parsed and checked like
    ``load_experiment`` does, without the rest of the file's checks)."""
    return _parse_stats(read_toml(path, "experiment file"), str(path))


def load_experiment(path: str | Path) -> Experiment:
    """Read and check an experiment TOML file (not yet resolved); a CODI study file
    (``kind = "codi_study"``) loads as the experiment it describes."""
    data = read_toml(path, "Experiment file", "pass a .toml file such as "
                     "experiments/quickstart.toml")
    if study_file.is_study(data):
        study = study_file.read_study(data, str(path))
        experiment = _parse(study_file.study_experiment(study), str(path))
        return replace(experiment, codi_study=study)
    return _parse(data, str(path))


# ---------------------------------------------------------------------------------------
# Parsing: every key is checked by name and type, every error names the file.

_TOP_KEYS = ("version", "name", "description", "checkpoints", "interventions", "tasks",
             "eval_seeds", "iterations", "n_latents", "batch_size", "device", "stats")
_CHECKPOINT_KEYS = ("path", "label", "train_seed", "model", "overrides")
_TASK_KEYS = ("name", "split", "path", "limit", "mode", "few_shot", "options",
              "max_new_tokens", "max_question_tokens")
_STATS_KEYS = ("tost_margin", "level", "n_boot", "seed", "smoke")
SMOKE_MIN_N_BOOT = 10


def _parse(data: Mapping[str, Any], source: str) -> Experiment:
    top = Table(data, "", source, _TOP_KEYS)
    version = top.get("version", int)
    if version != VERSION:
        raise top.fail("version", f"is {version}; this ablate reads version {VERSION} files")
    name = top.get("name", str)
    if not _NAME.match(name):
        raise top.fail("name", f"{name!r} must be letters, digits, '.', '_' or '-' (it names "
                               "the default run directory runs/<name>)")
    checkpoints = _entries(data, "checkpoints", source, _CHECKPOINT_KEYS, _parse_checkpoint)
    models = sorted({c.model for c in checkpoints})
    if len(models) > 1:
        raise AblateError(f"{source}: [[checkpoints]] mix models {' and '.join(models)}; an "
                          "experiment runs one kind of model: split it into two files")
    codi = models == [CODI]
    tasks = _entries(data, "tasks", source, _TASK_KEYS, _parse_task)
    tasks = tuple(_check_task_for_model(task, codi, Table(data["tasks"][i], f"[[tasks]] #{i + 1}",
                                                          source, _TASK_KEYS))
                  for i, task in enumerate(tasks))
    interventions = _parse_interventions(data.get("interventions", []), source, codi)
    axis, other = ("n_latents", "iterations") if codi else ("iterations", "n_latents")
    if other in data:
        why = ("a CODI checkpoint runs with its own T" if codi
               else "n_latents is the grid axis of CODI checkpoints (model = \"codi\")")
        raise top.fail(other, f"does not apply here ({why}); give {axis} instead")
    device = top.get("device", str, "cpu")
    try:
        check_device_name(device)
    except AblateError as err:
        raise AblateError(f"{source}: {err}") from None
    stats = _parse_stats(data, source)
    return Experiment(
        name=name,
        description=top.get("description", str, ""),
        checkpoints=checkpoints,
        interventions=interventions,
        tasks=tasks,
        eval_seeds=top.int_list("eval_seeds", [0]),
        iterations=() if codi else top.int_list("iterations"),
        n_latents=top.int_list("n_latents") if codi else (),
        batch_size=top.get("batch_size", int, 16, min_value=1),
        device=device,
        stats=stats,
        version=version,
        source=source,
    )


def _parse_stats(data: Mapping[str, Any], source: str) -> StatsSettings:
    reader = Table(data.get("stats", {}), "[stats]", source, _STATS_KEYS)
    defaults = StatsSettings()
    stats = StatsSettings(
        tost_margin=float(reader.get("tost_margin", (float, int), defaults.tost_margin)),
        level=float(reader.get("level", (float, int), defaults.level)),
        n_boot=reader.get("n_boot", int, defaults.n_boot, min_value=SMOKE_MIN_N_BOOT),
        seed=reader.get("seed", int, defaults.seed, min_value=0),
        smoke=reader.get("smoke", bool, defaults.smoke),
    )
    if stats.n_boot < MIN_N_BOOT and not stats.smoke:
        raise reader.fail("n_boot", f"is {stats.n_boot}, below the protocol's minimum of "
                          f"{MIN_N_BOOT} bootstrap replicates: use n_boot >= {MIN_N_BOOT} "
                          f"({PRECISE_P_BOOT} to report p < 0.01), or add smoke = true to "
                          "[stats] for a smoke run whose report is not for reporting")
    if not 0 < stats.level < 1:
        raise reader.fail("level", f"must lie strictly between 0 and 1, got {stats.level}")
    if stats.tost_margin <= 0:
        raise reader.fail("tost_margin", f"must be > 0, got {stats.tost_margin}")
    return stats


def _entries(data: Mapping[str, Any], key: str, source: str, allowed: Sequence[str],
             parse: Any, *, required: bool = True) -> tuple[Any, ...]:
    tables = data.get(key, [])
    if not isinstance(tables, list) or (required and not tables):
        raise AblateError(f"{source}: needs at least one [[{key}]] table (allowed keys: "
                          f"{', '.join(allowed)})")
    return tuple(parse(Table(t, f"[[{key}]] #{i + 1}", source, allowed))
                 for i, t in enumerate(tables))


def _parse_interventions(tables: Any, source: str, codi: bool) -> tuple[dict[str, Any], ...]:
    """The [[interventions]] tables, checked by their own module (names, keys, sites, k)
    without a model; the d- and layer-dependent checks wait for the checkpoints. CODI
    models take the latent sites only, Matrix Thinkers every other site."""
    from ablate.interventions import validate_conditions

    try:
        conditions = validate_conditions(tables)
    except AblateError as err:
        raise AblateError(f"{source}: {err}") from None
    for condition in conditions:
        for part in condition.interventions:
            if is_latent_site(part.site) != codi:
                need = ("CODI checkpoints take the sites 'latent' and 'latent.j'" if codi else
                        "latent sites act on CODI checkpoints only (model = \"codi\")")
                raise AblateError(f"{source}: condition '{condition.label}' acts at site "
                                  f"'{part.site}': {need}")
    return tuple(dict(t) for t in tables)


def _parse_checkpoint(r: Table) -> CheckpointSpec:
    model = r.get("model", str, THINKER)
    if model not in MODELS:
        raise r.fail("model", f"is {model!r}; use one of {', '.join(MODELS)}")
    allowed = CODI_OVERRIDE_KEYS if model == CODI else OVERRIDE_KEYS
    overrides = Table(r.data.get("overrides", {}), f"{r.where} overrides", r.source, allowed)
    overrides.get("assume_research_defaults", bool, False)
    overrides.get("n_heads", int, None, min_value=1)
    return CheckpointSpec(
        path=r.get("path", str),
        label=r.get("label", str),
        train_seed=r.get("train_seed", int, None, min_value=0),
        overrides=dict(overrides.data),
        model=model,
    )


def _check_task_for_model(task: TaskSpec, codi: bool, r: Table) -> TaskSpec:
    """CODI checkpoints answer generatively after their latents, without exemplars;
    max_question_tokens applies to them only, max_new_tokens to generation only, the
    scoring options (outcome, stop) to a Matrix Thinker's generation only, which gets
    its task's defaults for those it leaves out (``ablate.tasks.scoring_options``)."""
    from ablate.tasks import scoring_options
    if codi and task.mode != "generative":
        raise r.fail("mode", f"is {task.mode!r}; CODI checkpoints answer after their latent "
                             "thoughts: set mode = \"generative\"")
    if codi and task.few_shot:
        raise r.fail("few_shot", "must be 0 for CODI checkpoints (their prompts hold one "
                                 "question)")
    if not codi and task.max_question_tokens is not None:
        raise r.fail("max_question_tokens", "applies to CODI checkpoints only; remove it")
    if task.mode != "generative" and task.max_new_tokens is not None:
        raise r.fail("max_new_tokens", "applies to generative tasks only; remove it")
    try:
        options = scoring_options(task.name, task.options, mode=task.mode, codi=codi)
    except AblateError as err:
        raise r.fail("options", str(err)) from None
    return replace(task, options=options)


def _parse_task(r: Table) -> TaskSpec:
    mode = r.get("mode", str, "teacher_forced")
    if mode not in MODES:
        raise r.fail("mode", f"is {mode!r}; use one of {', '.join(MODES)}")
    few_shot = r.get("few_shot", int, 0, min_value=0)
    return TaskSpec(
        name=r.get("name", str),
        split=r.get("split", str, "test"),
        path=r.get("path", str, None),
        limit=r.get("limit", int, None, min_value=1),
        mode=mode,
        few_shot=few_shot,
        options=dict(r.get("options", dict, {})),
        max_new_tokens=r.get("max_new_tokens", int, None, min_value=1),
        max_question_tokens=r.get("max_question_tokens", int, None, min_value=1),
    )


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else v)
            for k, v in values.items() if v is not None and v != {}}
