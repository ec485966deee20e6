"""The process executor (``ablate run --workers N``) and the thread policy: the same
records as the local executor, the executor contract on errors, threads from the idle
cores, records the same on 1 and 2 threads."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from ablate.errors import AblateError
from ablate.executors import ProcessExecutor, get_executor, run_experiment, run_job
from ablate.executors.threads import job_threads, model_width
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
    kept = read_records(tmp_path / "process").attrs["torch_threads"]  # through the workers
    assert set(kept) == {job.job_id for job in expand_jobs(experiment)}
    assert "boom" not in done and set(done) <= {"a", "b"} and "a" in done


def test_workers_must_be_a_positive_integer():
    with pytest.raises(AblateError, match="--workers 0"):
        get_executor("process", workers=0)


def test_thread_policy_takes_idle_cores_within_the_budget(monkeypatch):
    # Invariant: --threads wins; a budget of one core (a --workers N share) is one thread;
    # otherwise the cores other processes left idle, clipped to 1..min(budget, 2) (the
    # counts whose records are identical), 1 where the load cannot be read.
    from ablate.executors import threads as policy

    assert job_threads(budget=8, requested=3) == 3
    with pytest.raises(AblateError, match="--threads 0"):
        job_threads(budget=8, requested=0)
    assert job_threads(budget=1) == 1
    assert job_threads(budget=8, width=768) == 8  # GPT-2-wide products share well
    assert model_width(tiny_model()) == 4
    for free, budget, expected in [(6, 8, 2), (2, 8, 2), (1, 8, 1), (6, 1, 1), (0, 8, 1),
                                   (None, 8, 1)]:
        monkeypatch.setattr(policy, "free_cores", lambda free=free: free)
        assert job_threads(budget=budget) == expected


def test_free_cores_subtracts_this_process_and_counts_other_busy_cores(monkeypatch):
    # Invariant: cores busy with this process's own work are free for it; a core another
    # process keeps busy is not (readings are (wall, busy, own) seconds).
    from ablate.executors import threads as policy

    readings = iter([policy._Reading(0.0, 0.0, 0.0), policy._Reading(1.0, 2.0, 1.0),
                     policy._Reading(2.0, 3.9, 2.9), policy._Reading(2.01, 3.9, 2.9)])
    monkeypatch.setattr(policy, "_read", lambda cores: next(readings))
    monkeypatch.setattr(policy, "FIRST_SAMPLE", 0.0)
    counter = policy._FreeCores()
    counter._cores = {0, 1}
    assert counter() == 1  # 2 busy core-seconds in 1 s, 1 of them ours: one core free
    assert counter() == 2  # 1.9 busy, all ours: both free
    assert counter() == 2  # a 10 ms window keeps the last decision


def test_records_do_not_depend_on_the_thread_count(tmp_path, monkeypatch):
    # Invariant: the default thread count follows the load (1 or 2), so a job's records
    # must be the same, bit for bit, on 1 and 2 threads.
    job = expand_jobs(load_experiment(write_experiment(tmp_path)).resolve())[0]
    one, two = run_job(job, threads=1), run_job(job, threads=2)
    pd.testing.assert_frame_equal(one, two, check_exact=True)


def test_jobs_readjust_threads_between_batches(tmp_path, monkeypatch):
    # Invariant: a job without --threads asks the policy again after every batch.
    import ablate.executors.jobs as jobs_module
    from ablate.executors import threads as policy

    decisions = iter([2, 1, 1, 1, 1, 1])
    monkeypatch.setattr(policy, "free_cores", lambda: next(decisions))
    seen: list[int] = []
    real = jobs_module.JobThreads.adjust

    def adjust(self):
        real(self)
        seen.append(torch.get_num_threads())

    monkeypatch.setattr(jobs_module.JobThreads, "adjust", adjust)
    job = expand_jobs(load_experiment(write_experiment(tmp_path)).resolve())[0]
    before = torch.get_num_threads()
    records = run_job(job, cpu_budget=2)
    assert seen and seen[0] == 1 and torch.get_num_threads() == before
    assert records.attrs["torch_threads"] == [2, 1]  # every count it ran on, in order


def test_run_files_keep_the_thread_counts_of_each_job_and_the_report_states_them(tmp_path):
    # Invariant: the thread counts a job ran on are read back from its record file (not a
    # record column), and the report's provenance states them.
    from ablate.report.provenance import threads_facts

    experiment = load_experiment(write_experiment(tmp_path)).resolve()
    run_experiment(experiment, tmp_path / "run", threads=2)
    records = read_records(tmp_path / "run")
    jobs = [job.job_id for job in expand_jobs(experiment)]
    assert records.attrs["torch_threads"] == {job_id: [2] for job_id in jobs}
    assert "torch_threads" not in records.columns
    [fact] = threads_facts(records.attrs["torch_threads"])
    assert fact.startswith(f"Torch threads per job: 2 ({len(jobs)} jobs);")
    assert "--threads 1" in fact


def test_threads_facts_count_jobs_per_thread_count_and_jobs_that_changed():
    # Invariant: one line; a job that ran on 2 then 1 counts under both and as changed;
    # runs on one thread need no advice; runs that kept no counts get no line.
    from ablate.report.provenance import threads_facts

    assert threads_facts({}) == []
    assert threads_facts({"a": [1], "b": [1]}) == ["Torch threads per job: 1 (2 jobs)"]
    [fact] = threads_facts({"a": [2, 1], "b": [2]})
    assert fact.startswith("Torch threads per job: 1 (1 job), 2 (2 jobs); 1 of 2 jobs changed")


def test_parallel_runs_start_the_longest_jobs_first_and_keep_the_grid_order_otherwise(tmp_path):
    # Invariant: jobs with more iterations start first (list scheduling on 2 workers then
    # ends a T = 4, 6, 8, 10 sweep of two checkpoints after 28 units instead of 32); jobs
    # of equal T keep their grid order (checkpoint outermost).
    from dataclasses import replace

    from ablate.grid import longest_first

    base = expand_jobs(load_experiment(write_experiment(tmp_path)).resolve())[0]
    grid = [replace(base, job_id=f"c{c}-T{t}", n_iterations=t)
            for c in range(2) for t in (4, 6, 8, 10)]
    ordered = longest_first(grid)
    assert [job.job_id for job in ordered] == ["c0-T10", "c1-T10", "c0-T8", "c1-T8",
                                               "c0-T6", "c1-T6", "c0-T4", "c1-T4"]

    def makespan(jobs, workers=2):
        ends = [0] * workers
        for job in jobs:
            ends[ends.index(min(ends))] += job.n_iterations
        return max(ends)

    assert (makespan(ordered), makespan(grid)) == (28, 32)
