"""Running jobs side by side in worker processes on this machine (``ablate run --workers N``).

Small-matrix jobs share cores badly between torch threads when other work competes
(``ablate.executors.threads``), so with N workers each job gets ``cores // N`` of them
(one thread each when N = cores) and the way to use more cores is more jobs at once.
``ProcessExecutor`` keeps the ``Executor`` contract: workers return each job's records to
this process, where ``on_done`` writes them, so a killed run loses only the jobs in
flight. Workers are spawned (not forked: torch's thread pools do not survive a fork) and
ignore Ctrl-C; on an interrupt or a failed write the driver stops them. A worker that
dies (killed, out of memory) stops the run with the finished jobs saved. As with any
spawned process, a script that uses it must guard its entry point (``if __name__ ==
"__main__":``): workers import the main module.

    >>> with ProcessExecutor(workers=2) as executor:            # doctest: +SKIP
    ...     run_experiment(experiment, "runs/quickstart", executor=executor)
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ablate.errors import AblateError
from ablate.executors.base import DoneFn, JobFn
from ablate.executors.threads import available_cores

logger = logging.getLogger(__name__)

# Jobs submitted per worker: a second one waiting hides the round trip between jobs.
QUEUED_PER_WORKER = 2


def _start_worker() -> None:
    # The driver handles Ctrl-C (and stops the workers); a worker must not die on it
    # mid-job with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessExecutor:
    """Runs jobs in ``workers`` spawned processes, each job with the thread policy's
    threads within ``cpu_budget`` = cores // workers. Use it as a context manager to
    keep the workers (and what they loaded) across several ``run`` calls."""

    name = "process"
    local = False  # job_fn runs in worker processes

    def __init__(self, workers: int = 2) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise AblateError(f"--workers {workers!r} must be an integer >= 1")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    @property
    def cpu_budget(self) -> int:
        return max(1, available_cores() // self.workers)

    def __enter__(self) -> ProcessExecutor:
        self._pool = self._new_pool()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=exc[0] is None, cancel_futures=True)
            self._pool = None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker)

    def run(self, jobs: Sequence[Any], job_fn: JobFn, on_done: DoneFn) -> None:
        """Run ``jobs`` in the workers; ``on_done`` runs here, per finished job."""
        if not jobs:
            return
        pool = self._pool or self._new_pool()
        pending: dict[Future, Any] = {}
        finished_cleanly = False
        try:
            queue = iter(jobs)
            first_error: BaseException | None = None
            while True:
                while first_error is None and len(pending) < QUEUED_PER_WORKER * self.workers:
                    job = next(queue, None)
                    if job is None:
                        break
                    pending[pool.submit(job_fn, job)] = job
                if not pending:
                    break
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    try:
                        frame = future.result()
                    except BrokenProcessPool as err:
                        first_error = first_error or AblateError(
                            f"job {getattr(job, 'job_id', job)}: a worker process died "
                            f"({err}); the jobs that finished are saved: run the same command "
                            "again to resume (if workers keep dying, check their memory or "
                            "lower --workers)")
                        continue
                    except Exception as err:
                        if first_error is None:
                            first_error = err
                            logger.info("job %s failed (%s); finishing the %d jobs already "
                                        "started", getattr(job, "job_id", job),
                                        type(err).__name__, len(pending))
                        continue
                    on_done(job, frame)
            if first_error is not None:
                raise first_error
            finished_cleanly = True
        finally:
            if not finished_cleanly:
                _stop(pool, pending)
                if pool is self._pool:
                    self._pool = None
            elif pool is not self._pool:
                pool.shutdown(wait=True)


def _stop(pool: ProcessPoolExecutor, pending: dict[Future, Any]) -> None:
    """Cancel what has not started and end the workers (they ignore Ctrl-C)."""
    for future in pending:
        future.cancel()
    processes = list(getattr(pool, "_processes", None) or {})
    workers = [pool._processes[pid] for pid in processes]  # type: ignore[attr-defined]
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()
    for process in workers:
        process.join(timeout=5)
