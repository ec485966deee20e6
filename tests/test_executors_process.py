"""The process executor (``ablate run --workers N``) and the thread policy: the same
records as the local executor, the executor contract on errors, one thread per job for
small-matrix models."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ablate.errors import AblateError
from ablate.executors import ProcessExecutor, get_executor, run_experiment, run_job
from ablate.executors.threads import SMALL_MATRIX, job_threads, model_width
from ablate.experiment import load_experiment
from ablate.grid import expand_jobs
from ablate.store import read_records
from tests.conftest import tiny_model
from tests.test_executors import one_torch_thread, write_experiment  # noqa: F401


def fail_on_boom(job: str) -> pd.DataFrame:
    """A picklable job function (workers import it by name)."""
    if job == "boom":
        raise ValueError("job failed")
    return pd.DataFrame({"x": [job], "threads": [torch.get_num_threads()]})


def test_two_workers_write_the_records_of_the_local_executor_and_keep_the_contract(tmp_path):
    # Invariant: records do not depend on the executor; a failing job still hands over
    # the jobs that finished, then its own error is raised; workers run with the thread
    # count the parent asked for (job functions set their own).
    experiment = load_experiment(write_experiment(tmp_path)).resolve()
    local = run_experiment(experiment, tmp_path / "local")
    with ProcessExecutor(workers=2) as executor:
        result = run_experiment(experiment, tmp_path / "process", executor=executor)
        done: list[str] = []
        with pytest.raises(ValueError, match="job failed"):
            executor.run(["a", "boom", "b"], fail_on_boom, lambda job, frame: done.append(job))
    assert result.n_run == local.n_run == len(expand_jobs(experiment))
    pd.testing.assert_frame_equal(read_records(tmp_path / "process"),
                                  read_records(tmp_path / "local"))
    assert "boom" not in done and set(done) <= {"a", "b"} and "a" in done


def test_workers_must_be_a_positive_integer():
    with pytest.raises(AblateError, match="--workers 0"):
        get_executor("process", workers=0)


def test_thread_policy_gives_small_matrix_jobs_one_thread(tmp_path, monkeypatch):
    assert job_threads(32, budget=8) == 1
    assert job_threads(SMALL_MATRIX + 1, budget=8) == 8
    assert job_threads(32, budget=8, requested=3) == 3
    with pytest.raises(AblateError, match="--threads 0"):
        job_threads(32, budget=8, requested=0)
    assert model_width(tiny_model()) == 4
    import ablate.executors.jobs as jobs_module

    seen: list[int] = []
    real = jobs_module.torch_threads
    monkeypatch.setattr(jobs_module, "torch_threads", lambda n: (seen.append(n), real(n))[1])
    job = expand_jobs(load_experiment(write_experiment(tmp_path)).resolve())[0]
    run_job(job, cpu_budget=2)
    run_job(job, threads=2, cpu_budget=2)
    assert seen == [1, 2]
