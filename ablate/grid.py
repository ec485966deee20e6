"""The grid of jobs a resolved experiment expands into: one ``Job`` per checkpoint x task x
T (a Thinker) or number of latents (CODI) x eval seed, each running every intervention
condition over the same items (``ablate.executors.run_job`` runs one).

    >>> experiment = load_experiment("experiments/quickstart.toml").resolve()  # doctest: +SKIP
    >>> [job.job_id for job in expand_jobs(experiment)][:1]                     # doctest: +SKIP
    ['multiprobe-s0__synthetic-test-teacher_forced__T4__e0__5d41402a']
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ablate.experiment import CODI, CheckpointSpec, Experiment, TaskSpec, is_glob, spec_fields
from ablate.schema import JOB_COLUMNS

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Job:
    """One cell of the grid: a checkpoint, a task, T (a Thinker) or a number of latents
    (CODI, whose T is the checkpoint's own: None here) and an eval seed, with every
    intervention condition (so evaluation shares one backbone pass across them). Plain
    values only, so a job pickles to a remote worker."""

    job_id: str
    checkpoint: CheckpointSpec
    task: TaskSpec
    n_iterations: int | None
    eval_seed: int
    interventions: tuple[dict[str, Any], ...]
    batch_size: int
    device: str
    n_latents: int | None = None

    @property
    def label(self) -> str:
        """The record's config_label: the checkpoint's, with "-L<n>" for CODI."""
        suffix = f"-L{self.n_latents}" if self.n_latents is not None else ""
        return self.checkpoint.label + suffix

    def columns(self, n_iterations: int | None = None) -> dict[str, Any]:
        """The ``JOB_COLUMNS`` values of this job (``n_iterations``: a CODI model's T)."""
        values = {
            "job_id": self.job_id,
            "checkpoint": self.checkpoint.path,
            "config_label": self.label,
            "train_seed": self.checkpoint.train_seed,
            "eval_seed": self.eval_seed,
            "task": self.task.name,
            "split": self.task.split,
            "mode": self.task.mode,
            "n_iterations": self.n_iterations if n_iterations is None else n_iterations,
        }
        assert tuple(values) == JOB_COLUMNS and values["n_iterations"] is not None
        return values


def expand_jobs(experiment: Experiment) -> list[Job]:
    """The grid checkpoints x tasks x iterations (CODI: numbers of latents) x eval seeds
    of a resolved experiment, in that nesting order (checkpoint outermost, so a
    sequential run loads each once).

    Job ids read "{label}-s{seed}__{task}-{split}-{mode}__T{T}__e{seed}__{hash8}" (CODI:
    "...-codi__L{n}__e{seed}__{hash8}"); the hash covers everything the job's records
    depend on (a translated CODI study: the study's hash), so ids are stable across runs
    and distinct even when two entries share a label and seed.
    """
    unresolved = [c.path for c in experiment.checkpoints
                  if c.train_seed is None or is_glob(c.path)]
    assert not unresolved, f"expand_jobs needs a resolved experiment: {unresolved}"
    codi = experiment.model == CODI
    axis = experiment.n_latents if codi else experiment.iterations
    jobs = []
    for checkpoint in experiment.checkpoints:
        for task in experiment.tasks:
            for value in axis:
                for eval_seed in experiment.eval_seeds:
                    cell = f"codi__L{value}" if codi else f"{task.mode}__T{value}"
                    readable = (f"{checkpoint.label}-s{checkpoint.train_seed}__{task.name}-"
                                f"{task.split}-{cell}__e{eval_seed}")
                    content = {"checkpoint": spec_fields(checkpoint), "task": spec_fields(task),
                               "n_latents" if codi else "n_iterations": value,
                               "eval_seed": eval_seed,
                               "interventions": list(experiment.interventions)}
                    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode())
                    suffix = (experiment.config_hash() if experiment.codi_study is not None
                              else digest.hexdigest())[:8]
                    jobs.append(Job(
                        job_id=f"{_UNSAFE.sub('-', readable)}__{suffix}",
                        checkpoint=checkpoint,
                        task=task,
                        n_iterations=None if codi else value,
                        eval_seed=eval_seed,
                        interventions=experiment.interventions,
                        batch_size=experiment.batch_size,
                        device=experiment.device,
                        n_latents=value if codi else None,
                    ))
    ids = [job.job_id for job in jobs]
    assert len(set(ids)) == len(ids), "job ids collide"
    return jobs


def longest_first(jobs: list[Job]) -> list[Job]:
    """The jobs in the order parallel workers should start them: most iterations (CODI:
    latents) first, otherwise as given. A job's cost grows with its T, so starting the
    longest first keeps one worker from running a long job alone at the end (list
    scheduling): a T = 4, 6, 8, 10 sweep of two checkpoints on 2 workers ends after
    28 units of T in this order and after 32 in the grid's."""
    def size(job: Job) -> int:
        return job.n_iterations if job.n_iterations is not None else job.n_latents or 0

    return sorted(jobs, key=size, reverse=True)  # stable: ties keep the grid order
