"""The default executor: one job after another in this process.

    >>> LocalExecutor().run(jobs, run_job, on_done)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

from ablate.executors.base import DoneFn, JobFn
from ablate.executors.threads import available_cores
from ablate.grid import Job


class LocalExecutor:
    """One job after another in this process."""

    name = "local"
    local = True

    @property
    def cpu_budget(self) -> int:
        return available_cores()

    def run(self, jobs: Sequence[Job], job_fn: JobFn, on_done: DoneFn) -> None:
        for job in jobs:
            on_done(job, job_fn(job))
