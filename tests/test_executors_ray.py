"""The Ray executor: the same records as the local executor, the executor contract, and
a worker killed mid-job losing nothing (retried, or left for the next run to finish).

One Ray instance (2 CPUs) serves the whole module; starting Ray costs seconds."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from ablate.cli import main
from ablate.errors import AblateError
from ablate.executors import get_executor, run_experiment
from ablate.experiment import Experiment, load_experiment
from ablate.grid import expand_jobs
from ablate.store import RECORDS, finished_jobs, read_records
from tests.test_executors import one_torch_thread, write_experiment  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install 'ablate[ray]')")


@pytest.fixture(scope="module")
def ray_instance():
    """A 2-CPU local Ray instance shared by the module, shut down at its end. Its workers
    get the repository on PYTHONPATH so they can import the job functions below."""
    import ray

    assert not ray.is_initialized(), "another test left Ray running"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO),
                                                                   os.environ.get("PYTHONPATH")])))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The tiny sweep of tests/test_executors.py (2 checkpoints x 2 T = 4 jobs of 3 items
    x 5 conditions) and its records from the local executor, the reference."""
    root = tmp_path_factory.mktemp("sweep")
    path = write_experiment(root)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_experiment(load_experiment(path).resolve(), root / "local")
    finally:
        torch.set_num_threads(before)
    return path, read_records(root / "local")


def kill_once(marker: str, victim: str, job_fn, job) -> pd.DataFrame:
    """``job_fn(job)``, except that the first attempt at job ``victim`` SIGKILLs its own
    worker after computing the records and before returning them (the marker file
    remembers that first attempt across processes)."""
    frame = job_fn(job)
    if job.job_id == victim and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return frame


def threads_or_fail(job: str) -> pd.DataFrame:
    """A stand-in job: fails for "boom", else reports its worker's torch thread count."""
    if job == "boom":
        raise AblateError("job boom: bad input")
    return pd.DataFrame({"job": [job], "threads": [torch.get_num_threads()]})


def killing_executor(marker: Path, victim: str, **options):
    """A Ray executor whose jobs go through ``kill_once``."""
    from ablate.executors.ray import RayExecutor

    class Killing(RayExecutor):
        def run(self, jobs, job_fn, on_done) -> None:
            super().run(jobs, functools.partial(kill_once, str(marker), victim, job_fn),
                        on_done)

    return Killing(**options)


def test_without_ray_the_ray_executor_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(AblateError, match=r"pip install 'ablate\[ray\]'") as err:
        get_executor("ray")
    assert "\n" not in str(err.value)


def test_ray_options_without_the_ray_executor_are_refused(sweep, capsys):
    path, _ = sweep
    assert main(["run", str(path), "--cpus-per-job", "2"]) == 2
    err = capsys.readouterr().err
    assert "--cpus-per-job applies to --executor ray" in err and "\n" not in err.strip()


@needs_ray
def test_cuda_jobs_without_gpus_per_job_are_refused_before_ray_starts(sweep):
    from ablate.executors.ray import RayExecutor

    path, _ = sweep
    jobs = expand_jobs(load_experiment(path).resolve())
    cuda_jobs = [dataclasses.replace(job, device="cuda") for job in jobs]
    with pytest.raises(AblateError, match="pass --gpus-per-job 1"):
        RayExecutor().run(cuda_jobs, threads_or_fail, lambda job, frame: None)


@needs_ray
def test_an_address_where_nothing_listens_is_a_one_line_error_without_waiting(sweep, capsys):
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path, _ = sweep
    assert main(["run", str(path), "--executor", "ray", "--address", f"127.0.0.1:{port}",
                 "--out", str(path.parent / "unreached")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot reach a Ray cluster" in err and "ray start --head" in err and "\n" not in err
    assert not (path.parent / "unreached").exists()  # refused before the run dir opens


@needs_ray
@pytest.mark.slow
def test_ray_run_from_the_cli_writes_the_records_of_a_local_run(ray_instance, sweep, tmp_path):
    path, local = sweep
    out = tmp_path / "ray"
    assert main(["run", str(path), "--out", str(out), "--executor", "ray",
                 "--cpus-per-job", "1"]) == 0
    assert ray_instance.is_initialized()  # a Ray it did not start is left running
    pd.testing.assert_frame_equal(read_records(out), local)


@needs_ray
@pytest.mark.slow
def test_a_codi_experiment_on_ray_writes_the_records_of_a_local_run(ray_instance, tmp_path):
    # Invariant: CODI jobs run through run_job on every executor, so a Ray run of a CODI
    # experiment (the bundled checkpoint, d = 8; cuts of every thought and of thought 0)
    # writes the local executor's records, column for column, value for value.
    experiment = Experiment.from_dict({
        "version": 1, "name": "codi-ray",
        "checkpoints": [{"path": str(REPO / "checkpoints" / "codi-synthetic"),
                         "label": "codi", "train_seed": 0, "model": "codi"}],
        "tasks": [{"name": "synthetic", "limit": 3, "mode": "generative",
                   "options": {"max_depth": 3, "max_value": 5, "max_total": 10}}],
        "n_latents": [0, 2],
        "interventions": [{"name": "svd_rank_k", "site": "latent", "k": [1, 8]},
                          {"name": "random_rank_k", "site": "latent.0", "k": 2}],
    }).resolve()
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_experiment(experiment, tmp_path / "local")
    finally:
        torch.set_num_threads(before)
    result = run_experiment(experiment, tmp_path / "ray", executor=get_executor("ray"))
    assert result.n_run == 2
    local, remote = read_records(tmp_path / "local"), read_records(tmp_path / "ray")
    assert set(local["condition"]) == {"none", "svd_rank_k@latent:k=1", "svd_rank_k@latent:k=8",
                                       "random_rank_k@latent.0:k=2:draw=0"}
    pd.testing.assert_frame_equal(remote, local)
    # each task's thread counts come back with its records (not a column)
    assert set(remote.attrs["torch_threads"]) == set(local["job_id"])


@needs_ray
@pytest.mark.slow
def test_job_error_hands_over_finished_jobs_starts_no_more_and_raises_the_job_error(
        ray_instance):
    from ablate.executors.ray import RayExecutor

    done = []
    # One task at a time, so "never" would start only after "boom" failed.
    with pytest.raises(AblateError, match="job boom: bad input"):
        RayExecutor(max_in_flight=1).run(["a", "boom", "never"], threads_or_fail,
                                         lambda job, frame: done.append(frame))
    assert [frame["job"].item() for frame in done] == ["a"]
    # Each worker's torch threads follow its CPU allotment.
    assert done[0]["threads"].item() == 1
    two = []
    RayExecutor(cpus_per_job=2).run(["b"], threads_or_fail, lambda job, frame: two.append(frame))
    assert two[0]["threads"].item() == 2


@needs_ray
@pytest.mark.slow
def test_worker_killed_mid_job_is_retried_and_the_run_loses_nothing(ray_instance, sweep,
                                                                     tmp_path):
    path, local = sweep
    experiment = load_experiment(path).resolve()
    victim = sorted(local["job_id"].unique())[1]
    marker = tmp_path / "killed"
    result = run_experiment(experiment, tmp_path / "run",
                            executor=killing_executor(marker, victim, max_retries=1))
    assert marker.exists() and result.n_run == 4  # the worker died once; the retry finished
    pd.testing.assert_frame_equal(read_records(tmp_path / "run"), local)


@needs_ray
@pytest.mark.slow
def test_worker_killed_without_retries_leaves_a_run_that_resumes_to_the_local_records(
        ray_instance, sweep, tmp_path):
    from ablate.executors.ray import RayExecutor

    path, local = sweep
    experiment = load_experiment(path).resolve()
    victim = sorted(local["job_id"].unique())[2]
    run_dir = tmp_path / "run"
    with pytest.raises(AblateError, match="retries are used up.*run the same command again"):
        run_experiment(experiment, run_dir,
                       executor=killing_executor(tmp_path / "killed", victim, max_retries=0))
    # The other three jobs are saved whole; the killed one left no file, not even a temp.
    assert finished_jobs(run_dir) == set(local["job_id"]) - {victim}
    assert not [p for p in (run_dir / RECORDS).iterdir() if p.suffix != ".parquet"]
    resumed = run_experiment(experiment, run_dir, executor=RayExecutor())
    assert (resumed.n_skipped, resumed.n_run) == (3, 1)
    pd.testing.assert_frame_equal(read_records(run_dir), local)
