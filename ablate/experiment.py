"""Experiment files: a TOML grid of checkpoints x tasks x iterations x eval seeds, each
job running every intervention condition over the same items.

An experiment file is data: ``version = 1``, a ``name``, ``[[checkpoints]]`` (path or glob,
train seed, configuration label, optional loader overrides), ``[[interventions]]`` (plain
tables handed to ``ablate.interventions.expand_conditions``), ``[[tasks]]``, the lists
``eval_seeds`` and ``iterations``, ``batch_size``, ``device`` and a ``[stats]`` table read
by the statistics. Unknown keys anywhere are errors. Relative paths resolve against the
file's directory; ``Experiment.resolve()`` expands globs into concrete checkpoints, and the
config hash is taken over that resolved form. ``expand_jobs`` turns a resolved experiment
into its grid of jobs (``ablate.executors.run_job`` runs one).

    >>> experiment = load_experiment("experiments/quickstart.toml").resolve()  # doctest: +SKIP
    >>> [job.job_id for job in expand_jobs(experiment)][:1]                     # doctest: +SKIP
    ['multiprobe-s0__synthetic-test-teacher_forced__T4__e0__5d41402a']
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from ablate.config import MODES, Table, check_device_name, config_hash, read_toml
from ablate.errors import AblateError
from ablate.stats.pvalues import MIN_N_BOOT, PRECISE_P_BOOT

VERSION = 1
# Loader settings a checkpoint file cannot tell (spec §3.6), passed to load_checkpoint;
# "tokenizer" is a directory and resolves like every other path. A stated value must agree
# with the checkpoint's own config and sidecar files; assume_research_defaults = true lets
# facts nothing states come from the research script defaults (recorded as assumed).
OVERRIDE_KEYS = ("attention", "n_heads", "variant", "embedding", "embedding_rank", "tokenizer",
                 "assume_research_defaults")
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


@dataclass(frozen=True)
class TaskSpec:
    """One ``[[tasks]]`` entry: ``options`` are the task's own settings (``get_task``)."""

    name: str
    split: str = "test"
    path: str | None = None
    limit: int | None = None
    mode: str = "teacher_forced"
    few_shot: int = 0
    options: dict[str, Any] = field(default_factory=dict)


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
    source: str = field(default="<memory>", compare=False)

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
            "checkpoints": [_drop_none(vars(c)) for c in self.checkpoints],
            "interventions": [dict(i) for i in self.interventions],
            "tasks": [_drop_none(vars(t)) for t in self.tasks],
            "eval_seeds": list(self.eval_seeds),
            "iterations": list(self.iterations),
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

    def resolve(self, *, limit: int | None = None) -> Experiment:
        """A copy with concrete, absolute checkpoint paths (globs expanded, seeds filled)
        and absolute task paths; ``limit`` caps every task's item count."""
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
        """sha256 of the canonical JSON of the config, without ``UNHASHED_KEYS``. Call it
        on a resolved experiment so the hash pins the checkpoints actually matched."""
        return config_hash(self.to_dict(), UNHASHED_KEYS)

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
        if "tokenizer" in overrides:
            overrides["tokenizer"] = str(self._absolute(overrides["tokenizer"]))
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
    """Read and check an experiment TOML file (not yet resolved)."""
    data = read_toml(path, "Experiment file", "pass a .toml file such as "
                     "experiments/quickstart.toml")
    return _parse(data, str(path))


# Columns run_job puts in front of the evaluation's item, condition and metric columns.
JOB_COLUMNS = ("job_id", "checkpoint", "config_label", "train_seed", "eval_seed", "task",
               "split", "mode", "n_iterations")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Job:
    """One cell of the grid: a checkpoint, a task, T and an eval seed, with every
    intervention condition (so evaluation shares one backbone pass across them). Plain
    values only, so a job pickles to a remote worker."""

    job_id: str
    checkpoint: CheckpointSpec
    task: TaskSpec
    n_iterations: int
    eval_seed: int
    interventions: tuple[dict[str, Any], ...]
    batch_size: int
    device: str

    def columns(self) -> dict[str, Any]:
        """The ``JOB_COLUMNS`` values of this job."""
        values = {
            "job_id": self.job_id,
            "checkpoint": self.checkpoint.path,
            "config_label": self.checkpoint.label,
            "train_seed": self.checkpoint.train_seed,
            "eval_seed": self.eval_seed,
            "task": self.task.name,
            "split": self.task.split,
            "mode": self.task.mode,
            "n_iterations": self.n_iterations,
        }
        assert tuple(values) == JOB_COLUMNS
        return values


def expand_jobs(experiment: Experiment) -> list[Job]:
    """The grid checkpoints x tasks x iterations x eval seeds of a resolved experiment,
    in that nesting order (checkpoint outermost, so a sequential run loads each once).

    Job ids read "{label}-s{seed}__{task}-{split}-{mode}__T{T}__e{seed}__{hash8}"; the
    hash covers everything the job's records depend on, so ids are stable across runs
    and distinct even when two entries share a label and seed.
    """
    unresolved = [c.path for c in experiment.checkpoints if c.train_seed is None
                  or _GLOB_CHARS.search(c.path)]
    assert not unresolved, f"expand_jobs needs a resolved experiment: {unresolved}"
    jobs = []
    for checkpoint in experiment.checkpoints:
        for task in experiment.tasks:
            for n_iterations in experiment.iterations:
                for eval_seed in experiment.eval_seeds:
                    readable = (f"{checkpoint.label}-s{checkpoint.train_seed}__{task.name}-"
                                f"{task.split}-{task.mode}__T{n_iterations}__e{eval_seed}")
                    content = {"checkpoint": vars(checkpoint), "task": vars(task),
                               "n_iterations": n_iterations, "eval_seed": eval_seed,
                               "interventions": list(experiment.interventions)}
                    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode())
                    jobs.append(Job(
                        job_id=f"{_UNSAFE.sub('-', readable)}__{digest.hexdigest()[:8]}",
                        checkpoint=checkpoint,
                        task=task,
                        n_iterations=n_iterations,
                        eval_seed=eval_seed,
                        interventions=experiment.interventions,
                        batch_size=experiment.batch_size,
                        device=experiment.device,
                    ))
    ids = [job.job_id for job in jobs]
    assert len(set(ids)) == len(ids), "job ids collide"
    return jobs


# ---------------------------------------------------------------------------------------
# Parsing: every key is checked by name and type, every error names the file.

_TOP_KEYS = ("version", "name", "description", "checkpoints", "interventions", "tasks",
             "eval_seeds", "iterations", "batch_size", "device", "stats")
_CHECKPOINT_KEYS = ("path", "label", "train_seed", "overrides")
_TASK_KEYS = ("name", "split", "path", "limit", "mode", "few_shot", "options")
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
    tasks = _entries(data, "tasks", source, _TASK_KEYS, _parse_task)
    interventions = _parse_interventions(data.get("interventions", []), source)
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
        iterations=top.int_list("iterations"),
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


def _parse_interventions(tables: Any, source: str) -> tuple[dict[str, Any], ...]:
    """The [[interventions]] tables, checked by their own module (names, keys, sites, k)
    without a model; the d- and layer-dependent checks wait for the checkpoints."""
    from ablate.interventions import validate_conditions

    try:
        validate_conditions(tables)
    except AblateError as err:
        raise AblateError(f"{source}: {err}") from None
    return tuple(dict(t) for t in tables)


def _parse_checkpoint(r: Table) -> CheckpointSpec:
    overrides = Table(r.data.get("overrides", {}), f"{r.where} overrides", r.source,
                        OVERRIDE_KEYS)
    overrides.get("assume_research_defaults", bool, False)
    return CheckpointSpec(
        path=r.get("path", str),
        label=r.get("label", str),
        train_seed=r.get("train_seed", int, None, min_value=0),
        overrides=dict(overrides.data),
    )


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
    )


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else v)
            for k, v in values.items() if v is not None and v != {}}
