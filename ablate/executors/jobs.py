"""Running an experiment's jobs: ``run_experiment`` (jobs -> run directory) and ``run_job``
(one job -> its records), with the loaders a sequential run reuses between jobs.

    >>> result = run_experiment(experiment, "runs/quickstart")   # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ablate.errors import AblateError
from ablate.executors.base import Executor, ItemProgress, JobFn, RunProgress
from ablate.executors.local import LocalExecutor
from ablate.executors.threads import JobThreads, available_cores, model_width
from ablate.experiment import CODI, Experiment, TaskSpec
from ablate.grid import Job, expand_jobs, longest_first
from ablate.store import RunStore

logger = logging.getLogger(__name__)


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
    threads: int | None = None,
) -> RunResult:
    """Run every unfinished job of a resolved experiment into ``run_dir`` (resumable).

    ``threads``: torch threads per job (default: ``ablate.executors.threads``: the cores
    of the executor's share that other processes leave idle, decided between batches)."""
    executor = executor or LocalExecutor()
    jobs = expand_jobs(experiment)
    store = RunStore.open(run_dir, config=experiment.manifest_config(),
                          config_hash=experiment.config_hash(),
                          job_ids=[job.job_id for job in jobs], experiment_file=experiment_file,
                          checkpoints=checkpoint_settings(experiment))
    with store:
        finished = store.finished()
        todo = [job for job in jobs if job.job_id not in finished]
        if not executor.local:  # workers side by side: start the longest jobs first
            todo = longest_first(todo)
        logger.info("%s: %d jobs, %d finished earlier, %d to run", run_dir, len(jobs),
                    len(jobs) - len(todo), len(todo))
        if progress is not None:
            progress.start(len(jobs), len(jobs) - len(todo))

        def write(job: Job, frame: pd.DataFrame) -> None:
            store.write(job.job_id, frame)
            if progress is not None:
                progress.job_done(job)

        job_fn: JobFn = functools.partial(run_job, threads=threads,
                                          cpu_budget=executor.cpu_budget)
        if executor.local and progress is not None:
            job_fn = functools.partial(job_fn, progress=progress.records_done)
        executor.run(todo, job_fn, write)
    return RunResult(Path(run_dir), len(jobs), len(jobs) - len(todo), len(todo))


def run_job(job: Job, *, progress: ItemProgress | None = None, threads: int | None = None,
            cpu_budget: int | None = None) -> pd.DataFrame:
    """The records of one job: item, condition and metric columns from the evaluation
    (a CODI job: also the CODI columns), preceded by the job columns
    (``ablate.schema.JOB_COLUMNS``). Runs with ``threads`` torch threads, by default the
    thread policy's choice within ``cpu_budget`` cores (default: every core)."""
    items = _load_items(_canonical(vars(job.task)))
    counter = _Counter(job, progress)
    if job.checkpoint.model == CODI:
        model = _codi_model(job.checkpoint.path, job.checkpoint.overrides, job.device)
        threads_of_job = JobThreads(cpu_budget or available_cores(), threads,
                                    model_width(getattr(model, "thinker", None) or model))
        frame, n_iterations = _evaluate_codi(job, model, items, counter, threads_of_job)
    else:
        loaded = _checkpoint(job.checkpoint.path, job.checkpoint.overrides)
        threads_of_job = JobThreads(cpu_budget or available_cores(), threads,
                                    model_width(loaded.model))
        frame = _evaluate_thinker(job, loaded, items, counter, threads_of_job)
        n_iterations = None
    columns = pd.DataFrame({
        name: pd.Series([value] * len(frame), dtype="string" if isinstance(value, str) else "int64")
        for name, value in job.columns(n_iterations).items()
    })
    records = pd.concat([columns, frame.reset_index(drop=True)], axis=1)
    # Kept with the job's records file (not a column): 1 and 2 threads give bit-identical
    # records on the shipped experiments, but a BLAS may round a small product
    # differently at 2, so a last-bit difference between two runs can be traced here.
    records.attrs = {"torch_threads": list(threads_of_job.used)}
    return records


class _Counter:
    """Reports a job's records done (``ItemProgress``) as the evaluation finishes them."""

    def __init__(self, job: Job, progress: ItemProgress | None) -> None:
        self.job, self.progress, self.done, self.total = job, progress, 0, 0

    def start(self, total: int) -> Callable[[int], None] | None:
        self.total = total
        if self.progress is None:
            return None
        self.progress(self.job, 0, total)
        return self.advance

    def advance(self, n: int) -> None:
        self.done += n
        assert self.progress is not None
        self.progress(self.job, self.done, self.total)


def _evaluate_thinker(job: Job, loaded: Any, items: list[Any], counter: _Counter,
                      threads_of_job: JobThreads) -> pd.DataFrame:
    from ablate.evaluation import evaluate
    from ablate.interventions import expand_conditions

    train_items = None
    if job.task.few_shot:
        train_items = _load_items(_canonical(vars(_few_shot_source(job.task))))
    config = loaded.model.config
    conditions = expand_conditions(list(job.interventions), d=config.mat_dim,
                                   n_layers=config.n_layers)
    progress = _between_batches(threads_of_job, counter.start(len(items) * len(conditions)))
    with threads_of_job.applied():
        return evaluate(
            loaded.model, loaded.tokenizer, items, conditions,
            task=_task(job.task), mode=job.task.mode, n_iterations=job.n_iterations,
            eval_seed=job.eval_seed, batch_size=job.batch_size, device=job.device,
            few_shot=job.task.few_shot, train_items=train_items,
            max_new_tokens=job.task.max_new_tokens, progress=progress,
        )


def _evaluate_codi(job: Job, model: Any, items: list[Any], counter: _Counter,
                   threads_of_job: JobThreads) -> tuple[pd.DataFrame, int]:
    """A CODI job's records and its model's T."""
    from ablate.codi.loading import model_iterations
    from ablate.codi.records import evaluate_codi, latent_conditions

    assert job.n_latents is not None
    conditions = latent_conditions(codi_conditions(job, model.mat_dim), job.n_latents,
                                   model.mat_dim)
    progress = _between_batches(threads_of_job, counter.start(len(items) * len(conditions)))
    with threads_of_job.applied():
        frame = evaluate_codi(
            model, items, conditions, task=_task(job.task), n_latents=job.n_latents,
            eval_seed=job.eval_seed, batch_size=job.batch_size,
            max_new_tokens=job.task.max_new_tokens,
            max_question_tokens=job.task.max_question_tokens, progress=progress)
    return frame, model_iterations(model)


def _between_batches(threads: JobThreads,
                     advance: Callable[[int], None] | None) -> Callable[[int], None]:
    """The evaluation's per-batch callback: re-decide the thread count, report progress."""
    def after_batch(n: int) -> None:
        threads.adjust()
        if advance is not None:
            advance(n)
    return after_batch


def codi_conditions(job: Job, d: int | None) -> list[Any]:
    """Every condition of a CODI job's interventions at a model with d x d thoughts."""
    from ablate.interventions import expand_conditions, validate_conditions

    if d is None:  # no matrix thoughts: nothing to cut, the conditions are left out
        return validate_conditions(list(job.interventions))
    return expand_conditions(list(job.interventions), d=d, n_layers=0)


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


def _codi_model(path: str, overrides: dict[str, Any], device: str) -> Any:
    """``load_codi_model``'s result on ``device``, reused while the path is unchanged."""
    return _load_codi(path, _canonical(overrides), Path(path).stat().st_mtime_ns, device)


@functools.lru_cache(maxsize=1)
def _load_codi(path: str, overrides_json: str, modified: int, device: str) -> Any:
    from ablate.codi.loading import load_codi_model

    return load_codi_model(path, **json.loads(overrides_json), device=device)


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
        if entry.model == CODI:  # a CODI model takes no settings with sources
            continue
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
