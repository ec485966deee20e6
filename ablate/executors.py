"""Running an experiment's jobs into a run directory, with pluggable executors.

``run_job`` turns one ``Job`` into its records (load checkpoint and items, expand the
conditions, evaluate, add the job columns). An ``Executor`` runs many jobs and hands each
finished job's DataFrame to ``on_done`` *in the driver process*; ``run_experiment``
makes ``on_done`` an atomic write into the ``RunStore``. So workers never touch the run
directory, a job is durable as soon as ``on_done`` returns, and a killed run loses at
most the jobs in flight, whatever the executor. ``check_experiment`` does every check a
run would make before its first job (checkpoints load, sites and k fit each model, items
load and encode) without running a model.

Adding an executor: implement ``Executor.run`` with that contract, set ``local = False``
when ``job_fn`` runs in other processes (it then gets the module-level, picklable
``run_job`` without progress callbacks), and add it to ``EXECUTORS``, as
``ablate.executors_ray.RayExecutor`` is (imported only when chosen).

    >>> result = run_experiment(experiment, "runs/quickstart")   # doctest: +SKIP
    >>> result.n_run, result.n_skipped                           # doctest: +SKIP
    (6, 0)
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from ablate.errors import AblateError, unknown_name_error
from ablate.experiment import Experiment, Job, TaskSpec, expand_jobs
from ablate.store import RunStore

logger = logging.getLogger(__name__)

JobFn = Callable[[Job], pd.DataFrame]
DoneFn = Callable[[Job, pd.DataFrame], None]
# (job, records finished, records in the job), a record being one (item, condition):
# how run_job reports progress inside a job.
ItemProgress = Callable[[Job, int, int], None]


class RunProgress(Protocol):
    """What ``run_experiment`` reports (the CLI draws it as progress bars)."""

    def start(self, n_jobs: int, n_finished: int) -> None: ...

    def records_done(self, job: Job, done: int, total: int) -> None: ...

    def job_done(self, job: Job) -> None: ...


class Executor(Protocol):
    """Runs jobs. Contract: call ``on_done(job, frame)`` in the calling process once per
    job as soon as it finishes (any order); on a job error, stop starting new jobs, still
    hand over the jobs that finished, then raise the first error."""

    name: str
    local: bool  # job_fn runs in this process (so it may carry progress callbacks)

    def run(self, jobs: Sequence[Job], job_fn: JobFn, on_done: DoneFn) -> None: ...


class LocalExecutor:
    """One job after another in this process."""

    name = "local"
    local = True

    def run(self, jobs: Sequence[Job], job_fn: JobFn, on_done: DoneFn) -> None:
        for job in jobs:
            on_done(job, job_fn(job))


def _ray_executor(**options: Any) -> Executor:
    # Imported here so that running locally never imports Ray.
    from ablate.executors_ray import RayExecutor

    return RayExecutor(**options)


EXECUTORS: dict[str, Callable[..., Executor]] = {"local": LocalExecutor, "ray": _ray_executor}


def get_executor(name: str, **options: Any) -> Executor:
    """A new executor registered as ``name`` (``EXECUTORS``), built with ``options``
    (the Ray executor's ``address``, ``cpus_per_job``, ``gpus_per_job``, ...)."""
    if name not in EXECUTORS:
        raise unknown_name_error("executor", name, EXECUTORS)
    return EXECUTORS[name](**options)


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    n_jobs: int
    n_skipped: int  # finished by an earlier session
    n_run: int


def run_experiment(
    experiment: Experiment,
    run_dir: str | Path,
    *,
    executor: Executor | None = None,
    progress: RunProgress | None = None,
    experiment_file: str | None = None,
) -> RunResult:
    """Run every unfinished job of a resolved experiment into ``run_dir`` (resumable)."""
    executor = executor or LocalExecutor()
    jobs = expand_jobs(experiment)
    store = RunStore.open(run_dir, config=experiment.to_dict(),
                          config_hash=experiment.config_hash(),
                          job_ids=[job.job_id for job in jobs], experiment_file=experiment_file,
                          checkpoints=checkpoint_settings(experiment))
    with store:
        finished = store.finished()
        todo = [job for job in jobs if job.job_id not in finished]
        logger.info("%s: %d jobs, %d finished earlier, %d to run", run_dir, len(jobs),
                    len(jobs) - len(todo), len(todo))
        if progress is not None:
            progress.start(len(jobs), len(jobs) - len(todo))

        def write(job: Job, frame: pd.DataFrame) -> None:
            store.write(job.job_id, frame)
            if progress is not None:
                progress.job_done(job)

        job_fn: JobFn = run_job
        if executor.local and progress is not None:
            job_fn = functools.partial(run_job, progress=progress.records_done)
        executor.run(todo, job_fn, write)
    return RunResult(Path(run_dir), len(jobs), len(jobs) - len(todo), len(todo))


def run_job(job: Job, *, progress: ItemProgress | None = None) -> pd.DataFrame:
    """The records of one job: item, condition and metric columns from the evaluation,
    preceded by the job columns (``ablate.experiment.JOB_COLUMNS``)."""
    from ablate.evaluation import evaluate
    from ablate.interventions import expand_conditions

    loaded = _checkpoint(job.checkpoint.path, job.checkpoint.overrides)
    items = _load_items(_canonical(vars(job.task)))
    train_items = None
    if job.task.few_shot:
        train_items = _load_items(_canonical(vars(_few_shot_source(job.task))))
    config = loaded.model.config
    conditions = expand_conditions(list(job.interventions), d=config.mat_dim,
                                   n_layers=config.n_layers)
    total, done = len(items) * len(conditions), 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        assert progress is not None
        progress(job, done, total)

    if progress is not None:
        progress(job, 0, total)
    frame = evaluate(
        loaded.model, loaded.tokenizer, items, conditions,
        task=job.task.name, mode=job.task.mode, n_iterations=job.n_iterations,
        eval_seed=job.eval_seed, batch_size=job.batch_size, device=job.device,
        few_shot=job.task.few_shot, train_items=train_items,
        progress=advance if progress is not None else None,
    )
    columns = pd.DataFrame({
        name: pd.Series([value] * len(frame), dtype="string" if isinstance(value, str) else "int64")
        for name, value in job.columns().items()
    })
    return pd.concat([columns, frame.reset_index(drop=True)], axis=1)


# ---------------------------------------------------------------------------------------
# Loading, cached: a sequential run visits one checkpoint's jobs back to back.

def _canonical(values: Any) -> str:
    return json.dumps(values, sort_keys=True)


def _checkpoint(path: str, overrides: dict[str, Any]) -> Any:
    """``load_checkpoint``'s result, reused while the path is unchanged on disk."""
    return _load_checkpoint(path, _canonical(overrides), Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _load_checkpoint(path: str, overrides_json: str, modified: int) -> Any:
    from ablate.checkpoint import load_checkpoint

    return load_checkpoint(path, overrides=json.loads(overrides_json),
                           overrides_from="experiment")


def checkpoint_settings(experiment: Experiment) -> list[dict[str, Any]]:
    """Per checkpoint of a resolved experiment: its matrix size d (a rank cut with k >= d
    keeps the states, so the statistics treat its contrasts as identity checks), what the
    weights do not give (attention, n_heads, ...), each value with its source, and the
    facts that were assumed rather than stated; for the run manifest, so a report can say
    where each came from."""
    from ablate.checkpoint import read_checkpoint
    from ablate.checkpoint.settings import settings_dict

    found = []
    for entry in experiment.checkpoints:
        resolved = read_checkpoint(entry.path, overrides=entry.overrides,
                                   overrides_from="experiment")
        settings = settings_dict(resolved.settings)
        found.append({"path": entry.path, "label": entry.label,
                      "train_seed": entry.train_seed, "format": resolved.kind,
                      "d": int(resolved.config.mat_dim), "settings": settings,
                      "assumed": [k for k, v in settings.items() if v["how"] == "assumed"]})
    return found


@functools.lru_cache(maxsize=4)
def _load_items(task_json: str) -> list[Any]:
    spec = TaskSpec(**json.loads(task_json))
    return _task(spec).load(spec.split, path=spec.path, limit=spec.limit)


def _task(spec: TaskSpec) -> Any:
    from ablate.tasks import get_task

    return get_task(spec.name, **spec.options)


def _few_shot_source(spec: TaskSpec) -> TaskSpec:
    """Few-shot exemplars come from the train split of the same source, never the
    evaluated split (a single-file path would serve the evaluated items back)."""
    if spec.path is not None and Path(spec.path).is_file():
        raise AblateError(
            f"task '{spec.name}' has few_shot = {spec.few_shot} but path {spec.path} is one "
            "file; pass a directory holding train and test files so exemplars come from train"
        )
    return TaskSpec(name=spec.name, split="train", path=spec.path, options=spec.options)


# ---------------------------------------------------------------------------------------
# Checking an experiment before running it.

@dataclass
class CheckSummary:
    """What ``check_experiment`` found; ``checkpoints`` is empty for a structural check."""

    n_conditions: int
    conditions: list[str]
    n_jobs: int | None = None
    n_evaluations: int | None = None  # item x condition evaluations over all jobs
    items: list[tuple[str, int]] = field(default_factory=list)  # ("task/split", items per job)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_experiment(experiment: Experiment, *, checkpoints: bool = True) -> CheckSummary:
    """Every check a run makes before its first job, without running a model.

    Structural (``checkpoints=False``): the file parsed, tasks and their options exist,
    conditions expand. Full (a resolved experiment): each checkpoint loads, its label
    agrees with its head, every site fires and every k <= d at each T; each task's items
    load (non-empty) and encode with each checkpoint's tokenizer and fit its max_len.
    """
    from ablate.interventions import validate_conditions

    conditions = validate_conditions(list(experiment.interventions))
    for spec in experiment.tasks:
        task = _task(spec)
        if spec.path is None and spec.split not in getattr(task, "splits", (spec.split,)):
            raise unknown_name_error(f"{spec.name} split", spec.split, task.splits)
    summary = CheckSummary(n_conditions=len(conditions), conditions=[c.label for c in conditions])
    if not checkpoints:
        return summary
    summary.n_jobs = len(expand_jobs(experiment))
    jobs_per_task = summary.n_jobs // len(experiment.tasks)
    summary.n_evaluations = 0
    loaded_items = []
    for spec in experiment.tasks:
        items = _load_items(_canonical(vars(spec)))
        if not items:
            raise AblateError(f"{experiment.source}: task '{spec.name}' split '{spec.split}' "
                              f"loaded no items (path {spec.path}); check the path and split")
        if spec.few_shot:
            pool = _load_items(_canonical(vars(_few_shot_source(spec))))
            if len(pool) <= spec.few_shot:
                raise AblateError(f"task '{spec.name}': few_shot = {spec.few_shot} needs more "
                                  f"than {len(pool)} train items; lower few_shot")
        loaded_items.append((spec, items))
        summary.items.append((f"{spec.name}/{spec.split}", len(items)))
        summary.n_evaluations += jobs_per_task * len(items) * len(conditions)
    checked: list[tuple[Any, int, int]] = []
    for entry in experiment.checkpoints:
        facts = _check_checkpoint(experiment, entry, summary)
        summary.checkpoints.append(facts)
        loaded = _checkpoint(entry.path, entry.overrides)
        tokenizer, window = loaded.tokenizer, trained_window(loaded.info.metadata)
        key = (tokenizer, facts["vocab_size"], facts["max_len"], window)
        if key not in checked:
            for spec, items in loaded_items:
                lengths = _check_encodes(tokenizer, spec, items, facts, entry.path)
                beyond = sum(n > window for n in lengths) if window is not None else 0
                if beyond:
                    summary.notes.append(
                        f"{beyond} of {len(items)} {spec.name}/{spec.split} items are longer "
                        f"than the {window}-token windows the checkpoints were trained on "
                        f"(e.g. {entry.path}; items up to {max(lengths)} tokens): positions "
                        f"past {window} were never trained, so those items are out of "
                        "distribution")
            checked.append(key)
    return summary


def trained_window(metadata: dict[str, Any]) -> int | None:
    """The training window (tokens) an ``ablate train`` checkpoint recorded, else None."""
    config = (metadata.get("training") or {}).get("config") or {}
    window = config.get("seq_len")
    return int(window) if isinstance(window, int) else None


def _check_checkpoint(experiment: Experiment, entry: Any, summary: CheckSummary) -> dict:
    from ablate.interventions import validate_conditions
    from ablate.model.config import HEADS

    loaded = _checkpoint(entry.path, entry.overrides)
    config = loaded.model.config
    d, n_layers = config.mat_dim, config.n_layers
    assumed = [line for name, line in zip(loaded.info.settings, loaded.info.describe_settings(),
                                          strict=True) if name in loaded.info.assumed]
    if assumed:
        summary.notes.append(f"checkpoint {entry.path}: {'; '.join(assumed)}")
    if entry.label in HEADS and entry.label != config.head:
        raise AblateError(
            f"{experiment.source}: checkpoint {entry.path} is labelled '{entry.label}' but "
            f"has a {config.head} head; fix the label or the path"
        )
    for n_iterations in experiment.iterations:
        try:
            conditions = validate_conditions(list(experiment.interventions), d=d,
                                             n_layers=n_layers, n_iterations=n_iterations)
        except AblateError as err:
            raise AblateError(f"{experiment.source}: checkpoint {entry.path}: {err}") from None
    for condition in conditions:
        too_big = [p.k for p in condition.interventions if p.k is not None and p.k > d]
        if too_big:
            raise AblateError(
                f"{experiment.source}: condition '{condition.label}' has k={too_big[0]} but "
                f"checkpoint {entry.path} has d={d}; use k <= {d} (k = d keeps the states)"
            )
        if condition.identity and condition.interventions:
            note = f"'{condition.label}' is the identity at d={d}"
            if note not in summary.notes:
                summary.notes.append(note)
    return {"path": entry.path, "label": entry.label, "train_seed": entry.train_seed,
            "d": d, "n_layers": n_layers, "head": config.head, "attention": config.attention,
            "vocab_size": config.vocab_size, "max_len": config.max_len}


def _check_encodes(tokenizer: Any, spec: TaskSpec, items: list[Any], facts: dict,
                   checkpoint: str) -> list[int]:
    """Raise unless every item encodes (and, teacher-forced, fits max_len); returns the
    teacher-forced sequence lengths in tokens (none in generative mode)."""
    from ablate.evaluation.teacher_forced import encode_forced
    from ablate.tasks.prompts import teacher_forced_example
    from ablate.tokenizer import check_encodable

    task = _task(spec)
    try:
        for item in items:
            example = teacher_forced_example(item, task.text_format)
            check_encodable(tokenizer, example.prompt + example.target,
                            f"{spec.name}[{spec.split}] item {item.item_id}",
                            vocab_size=facts["vocab_size"])
        if spec.mode != "teacher_forced":
            return []
        examples = encode_forced(tokenizer, items, task.text_format, facts["max_len"])
    except AblateError as err:
        raise AblateError(f"checkpoint {checkpoint}: {err}") from None
    return [len(e.prompt_ids) + len(e.target_ids) for e in examples]
