"""Running an experiment's jobs into a run directory, with pluggable executors.

``run_job`` turns one ``Job`` into its records (load checkpoint and items, expand the
conditions, evaluate, add the job columns). An ``Executor`` runs many jobs and hands each
finished job's DataFrame to ``on_done`` *in the driver process*; ``run_experiment``
makes ``on_done`` an atomic write into the ``RunStore``. So workers never touch the run
directory, a job is durable as soon as ``on_done`` returns, and a killed run loses at
most the jobs in flight, whatever the executor. ``check_experiment`` does every check a
run would make before its first job (checkpoints load, sites and k fit each model, items
load and encode) without running a model; ``estimate_run`` times a short calibration and
projects the whole run.

Modules: ``base`` (the contract), ``local`` (one job after another), ``process``
(``--workers N``: jobs side by side in spawned processes), ``ray`` (a Ray cluster,
imported only when chosen), ``jobs`` (run_experiment, run_job), ``check``, ``threads``
(torch threads per job), ``estimate``. Adding an executor: implement ``Executor.run``
with the contract of ``base``, set ``local = False`` when ``job_fn`` runs in other
processes (it then gets the module-level, picklable ``run_job`` without progress
callbacks), and add it to ``EXECUTORS``.

    >>> result = run_experiment(experiment, "runs/quickstart")   # doctest: +SKIP
    >>> result.n_run, result.n_skipped                           # doctest: +SKIP
    (6, 0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ablate.errors import unknown_name_error
from ablate.executors.base import DoneFn, Executor, ItemProgress, JobFn, RunProgress
from ablate.executors.check import CheckSummary, check_experiment, trained_window
from ablate.executors.jobs import RunResult, checkpoint_settings, run_experiment, run_job
from ablate.executors.local import LocalExecutor
from ablate.executors.process import ProcessExecutor


def _ray_executor(**options: Any) -> Executor:
    # Imported here so that running locally never imports Ray.
    from ablate.executors.ray import RayExecutor

    return RayExecutor(**options)


EXECUTORS: dict[str, Callable[..., Executor]] = {
    "local": LocalExecutor, "process": ProcessExecutor, "ray": _ray_executor}


def get_executor(name: str, **options: Any) -> Executor:
    """A new executor registered as ``name`` (``EXECUTORS``), built with ``options``
    (the process executor's ``workers``; the Ray executor's ``address``,
    ``cpus_per_job``, ``gpus_per_job``, ...)."""
    if name not in EXECUTORS:
        raise unknown_name_error("executor", name, EXECUTORS)
    return EXECUTORS[name](**options)


__all__ = [
    "EXECUTORS", "CheckSummary", "DoneFn", "Executor", "ItemProgress", "JobFn",
    "LocalExecutor", "ProcessExecutor", "RunProgress", "RunResult", "check_experiment",
    "checkpoint_settings", "get_executor", "run_experiment", "run_job", "trained_window",
]
