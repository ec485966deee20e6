"""What an executor is: the job function, the completion callback and the contract.

    >>> executor.run(jobs, run_job, on_done)   # on_done(job, frame) here  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import pandas as pd

from ablate.grid import Job

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
    cpu_budget: int  # CPU cores each job may use (the thread policy's ceiling)

    def run(self, jobs: Sequence[Job], job_fn: JobFn, on_done: DoneFn) -> None: ...
