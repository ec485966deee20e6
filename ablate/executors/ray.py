"""Running an experiment's jobs on a Ray cluster: one Ray task per job.

``RayExecutor`` keeps the ``Executor`` contract of ``ablate.executors``: tasks return
their job's records to the driver as they finish (``ray.wait``), and the driver hands
each frame to ``on_done``, which ``run_experiment`` makes an atomic write into the run
directory. Workers never write there, so a worker killed mid-job loses only that job's
unfinished work: Ray retries the task (``max_retries``, for worker and node failures),
and if retries run out the run stops with the finished jobs saved and resumes on the
next ``ablate run``. Ray is imported only when this executor is built, so the local
executor needs no Ray.

Without an address it starts a private local Ray instance for the run; with one
("auto" on a cluster node, "ray://head:10001" for Ray Client) it connects to an existing
cluster and disconnects afterwards, leaving the cluster running.

    >>> executor = RayExecutor(address="auto", cpus_per_job=1)         # doctest: +SKIP
    >>> run_experiment(experiment, "runs/quickstart", executor=executor)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import pandas as pd

from ablate.errors import AblateError
from ablate.executors.base import DoneFn, JobFn

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'ablate[ray]'"
# Tasks submitted per job slot of the cluster: a second task waiting on each slot hides
# the driver's round trip between one job's end and the next one's start. After a job
# error nothing more is submitted, but what was submitted still runs (and is saved), so
# the window is kept small.
QUEUED_PER_SLOT = 2
CONNECT_TIMEOUT_S = 10.0
_NO_MORE_JOBS = object()


def import_ray() -> ModuleType:
    """The ``ray`` module, or the error that says how to install it."""
    try:
        import ray
    except ImportError:
        raise AblateError(f"--executor ray needs Ray, which is not installed; run "
                          f"`{INSTALL_HINT}` or use --executor local") from None
    return ray


class RayExecutor:
    """Runs each job as one Ray task with ``cpus_per_job`` CPUs and ``gpus_per_job``
    GPUs (fractions allowed), ``max_retries`` retries after a worker or node failure
    (never after an error raised by the job itself, which would only repeat), and at
    most ``max_in_flight`` tasks submitted at once (default: two per job slot of the
    cluster). ``num_cpus`` sizes the local instance started when ``address`` is None
    (default: every core of this machine)."""

    name = "ray"
    local = False  # job_fn runs in Ray worker processes

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_job: float = 1.0,
        gpus_per_job: float = 0.0,
        max_retries: int = 3,
        max_in_flight: int | None = None,
        num_cpus: int | None = None,
    ) -> None:
        if not cpus_per_job > 0:
            raise AblateError(f"--cpus-per-job is {cpus_per_job}; pass a number > 0 (e.g. 1)")
        if gpus_per_job < 0:
            raise AblateError(f"--gpus-per-job is {gpus_per_job}; pass 0 (CPU jobs) or more")
        if max_retries < 0:
            raise AblateError(f"max_retries is {max_retries}; pass 0 or more")
        if max_in_flight is not None and max_in_flight < 1:
            raise AblateError(f"max_in_flight is {max_in_flight}; pass 1 or more")
        self._ray = import_ray()
        if address is not None:  # before the run directory opens, as other flag errors
            try:
                _check_reachable(address)
            except ConnectionError as err:
                raise _unreachable(address, err) from err
        self.address = address
        self.cpus_per_job = cpus_per_job
        self.gpus_per_job = gpus_per_job
        self.max_retries = max_retries
        self.max_in_flight = max_in_flight
        self.num_cpus = num_cpus

    @property
    def cpu_budget(self) -> int:
        """Cores each job may use: its whole CPUs."""
        return max(1, math.floor(self.cpus_per_job))

    def run(self, jobs: Sequence[Any], job_fn: JobFn, on_done: DoneFn) -> None:
        """Run ``jobs`` as Ray tasks; ``on_done`` runs here, in the driver, per finished job."""
        if not jobs:
            return
        self._check_devices(jobs)
        ray = self._ray
        started = self._connect()
        pending: dict[Any, Any] = {}  # ObjectRef -> job
        try:
            task = ray.remote(_run_on_worker).options(
                num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job,
                max_retries=self.max_retries, retry_exceptions=False)
            threads = max(1, math.floor(self.cpus_per_job))
            window = self.max_in_flight or QUEUED_PER_SLOT * self._job_slots(started)
            queue = iter(jobs)
            first_error: BaseException | None = None
            while True:
                # Top up the window; after an error no new job starts.
                while first_error is None and len(pending) < window:
                    job = next(queue, _NO_MORE_JOBS)
                    if job is _NO_MORE_JOBS:
                        break
                    pending[task.remote(job_fn, job, threads)] = job
                if not pending:
                    break
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ref)
                try:
                    frame = ray.get(ref)
                except ray.exceptions.RayError as err:
                    if first_error is None:
                        first_error = self._job_error(job, err)
                        logger.info("job %s failed (%s); finishing the %d jobs already "
                                    "started", _job_id(job), type(err).__name__, len(pending))
                    else:  # only the first error is raised; say that others failed too
                        logger.warning("job %s failed too: %s", _job_id(job),
                                       type(err).__name__)
                    continue
                on_done(job, frame)
            if first_error is not None:
                raise first_error
        finally:
            # Reached with tasks pending only when the driver itself fails (Ctrl-C, a
            # failed write): stop them so a shared cluster does not compute for nobody.
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:  # a broken connection must not mask the driver's error
                    logger.debug("could not cancel a Ray task", exc_info=True)
            if started:
                ray.shutdown()

    def _connect(self) -> bool:
        """Start or join Ray; True if this call did (so ``run`` shuts it down again)."""
        ray = self._ray
        if ray.is_initialized():
            logger.info("reusing this process's Ray connection (address %s not used)",
                        self.address)
            return False
        # Workers log to their own files under the session directory; the driver shows
        # only what a job returns or raises.
        settings = {"log_to_driver": False, "logging_level": logging.WARNING}
        try:
            if self.address is None:
                ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False,
                         ignore_reinit_error=True, **settings)
            else:
                ray.init(address=self.address, **settings)
        except (ConnectionError, TimeoutError) as err:
            raise _unreachable(self.address, err) from err
        resources = ray.cluster_resources()
        logger.info("Ray cluster: %s CPUs, %s GPUs", resources.get("CPU", 0),
                    resources.get("GPU", 0))
        return True

    def _job_slots(self, started: bool) -> int:
        """How many jobs the cluster can run at once with the requested resources."""
        resources = self._ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        slots = math.floor(cpus / self.cpus_per_job + 1e-9)
        if self.gpus_per_job:
            slots = min(slots, math.floor(gpus / self.gpus_per_job + 1e-9))
        if slots >= 1:
            return slots
        message = (f"a job needs {self.cpus_per_job} CPUs and {self.gpus_per_job} GPUs but "
                   f"the Ray cluster has {cpus:g} CPUs and {gpus:g} GPUs")
        if started and self.address is None:
            raise AblateError(f"{message} (a local instance); lower --cpus-per-job or "
                              "--gpus-per-job, or pass --address of a cluster that has them")
        # A connected cluster may grow (autoscaler); its tasks wait until it does.
        logger.warning("%s; tasks wait until nodes with those resources join", message)
        return 1

    def _check_devices(self, jobs: Sequence[Any]) -> None:
        devices = {getattr(job, "device", "cpu") for job in jobs}
        if self.gpus_per_job == 0 and any(d.startswith("cuda") for d in devices):
            raise AblateError(
                f"the experiment's device is {sorted(devices)[0]!r} but --gpus-per-job is 0, "
                "and Ray hides GPUs from tasks that do not request one; pass --gpus-per-job 1"
            )
        if self.gpus_per_job and devices == {"cpu"}:
            logger.warning("--gpus-per-job %s reserves GPUs, but the experiment's device is "
                           "'cpu'; set device = \"cuda\" to use them", self.gpus_per_job)

    def _job_error(self, job: Any, err: Exception) -> BaseException:
        """The error a failed task becomes: a job's own exception as itself (an
        ``AblateError`` stays one line for the CLI), a lost worker as an ``AblateError``
        that says the run resumes."""
        if isinstance(err, self._ray.exceptions.RayTaskError) and err.cause is not None:
            cause = err.cause
            cause.__cause__ = err  # keeps the worker's traceback for --debug
            return cause
        return AblateError(
            f"job {_job_id(job)}: its Ray worker was lost ({type(err).__name__}) and "
            f"its {self.max_retries} retries are used up; the jobs that finished are saved: "
            "run the same command again to resume (if workers keep dying, check their "
            "memory or give each job more with --cpus-per-job)"
        )


def _run_on_worker(job_fn: JobFn, job: Any, threads: int) -> pd.DataFrame:
    """One job inside a Ray worker. torch would otherwise start a thread per core of the
    node in every worker, oversubscribing the CPUs that Ray hands out per job."""
    import torch

    torch.set_num_threads(threads)
    return job_fn(job)


def _check_reachable(address: str) -> None:
    """Fail fast when nothing listens at a "host:port" address: Ray itself keeps retrying
    an unreachable head for minutes before giving up."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConnectionError(f"nothing answers at {host}:{port}: {err}") from err


def _unreachable(address: str | None, err: Exception) -> AblateError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    # Ray enables token authentication for clusters started by `ray start`, but a client
    # that names the address explicitly only sends the token when told to.
    token = ("; if the cluster uses token authentication, export RAY_AUTH_MODE=token"
             if address not in (None, "auto") else "")
    return AblateError(
        f"cannot reach a Ray cluster at --address {address} ({reason}); start one with "
        "`ray start --head`, pass the head's address, or drop --address to run on a "
        f"local Ray instance{token}"
    )


def _job_id(job: Any) -> str:
    return str(getattr(job, "job_id", job))
