"""``ablate validate`` and ``ablate run``: summaries, one-line errors that write nothing,
resume after SIGKILL, and every shipped experiment file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ablate.cli import main
from ablate.store import MANIFEST, OWNER, RECORDS, finished_jobs, read_records
from tests.test_executors import one_torch_thread, write_experiment  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.toml"))
BUNDLED = REPO / "checkpoints" / "multiprobe-seed0"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_shipped_experiments_exist():
    assert {p.name for p in EXPERIMENTS} >= {
        "quickstart.toml", "rank_projection_gsm8k.toml", "rank_projection_openr1.toml",
        "starting_embedding_rank.toml", "codi_rank_dynamics.toml", "loop_rank.toml"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_experiment_passes_structural_validation(path, capsys):
    assert main(["validate", "--no-checkpoints", str(path)]) == 0
    assert "structure OK" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["loop_rank.toml", "rank_projection_gsm8k.toml",
                                  "rank_projection_openr1.toml", "starting_embedding_rank.toml"])
def test_full_validation_without_the_real_checkpoints_points_to_the_structural_mode(name, capsys):
    # These files name checkpoints/real/..., which only exist where the models were trained.
    if list((REPO / "checkpoints" / "real").glob("round2-seed*")):
        pytest.skip("real checkpoints present")
    assert main(["validate", str(REPO / "experiments" / name)]) == 2
    assert "--no-checkpoints" in one_line_error(capsys)


@pytest.mark.skipif(not BUNDLED.exists(), reason="bundled checkpoints not built yet")
def test_quickstart_passes_full_validation_and_its_k_ladder_ends_at_the_identity(capsys):
    # k runs 1, 2, 4, 8, 16 and the bundled checkpoints have d = 16, so the top rung is
    # the built-in identity check (it must match "none") for both SVD and random cuts.
    assert main(["validate", str(REPO / "experiments" / "quickstart.toml")]) == 0
    out = capsys.readouterr().out
    assert "OK (config hash" in out and "6 checkpoints" in out and "d=16" in out
    assert "'svd_rank_k@head_input:k=16' is the identity at d=16" in out
    assert "'random_rank_k@head_input:k=16:draw=0' is the identity at d=16" in out
    assert "k=8' is the identity" not in out


def test_validate_prints_jobs_conditions_and_items(tmp_path, capsys):
    assert main(["validate", str(write_experiment(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "5 per job" in out and "synthetic/test: 3 items" in out
    assert "= 4 jobs, 60 item x condition evaluations" in out
    assert not (tmp_path / "runs").exists()


def test_run_writes_the_run_dir_and_names_the_next_command(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(write_experiment(tmp_path))]) == 0
    out = capsys.readouterr().out
    run_dir = Path("runs") / "tiny"  # the default: runs/<experiment name>
    assert f"results: {run_dir}" in out and f"ablate stats {run_dir}" in out
    assert len(finished_jobs(run_dir)) == 4 and not (run_dir / OWNER).exists()


@pytest.mark.parametrize("changes, fragment", [
    ({"interventions": [{"name": "svd_rank_k", "k": [5]}]}, "k=5 but checkpoint"),
    ({"interventions": [{"name": "svd_rank_k", "k": [1], "site": "head_output"}]},
     "Unknown hook site 'head_output'"),
    ({"interventions": [{"name": "lowrank", "k": [1]}]}, "Unknown intervention 'lowrank'"),
    ({"tasks": [{"name": "gsm8k", "path": "empty.jsonl"}]}, "has no records"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, changes, fragment):
    (tmp_path / "empty.jsonl").write_text("")
    path = write_experiment(tmp_path, **changes)
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 2
    assert fragment in one_line_error(capsys)
    assert not (tmp_path / "run").exists()


def test_other_config_in_existing_run_dir_is_refused_and_records_are_kept(tmp_path, capsys):
    path, run_dir = write_experiment(tmp_path), tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), "--limit", "2"]) == 0
    capsys.readouterr()
    before = read_records(run_dir)
    assert main(["run", str(path), "--out", str(run_dir)]) == 2  # no --limit: other hash
    assert "new --out" in one_line_error(capsys)
    pd.testing.assert_frame_equal(read_records(run_dir), before)
    assert main(["run", str(path), "--out", str(run_dir), "--executor", "rey"]) == 2
    assert "Unknown executor 'rey'" in one_line_error(capsys)


# A run that blocks inside its second record write, right before the rename that would
# publish the file: the worst moment for a SIGKILL.
KILLED_RUN = """
import os, sys, time
marker, args = sys.argv[1], sys.argv[2:]
publish, writes = os.replace, []
def replace(src, dst):
    if str(dst).endswith(".parquet"):
        writes.append(dst)
        if len(writes) == 2:
            open(marker, "w").close()
            time.sleep(600)
    publish(src, dst)
os.replace = replace
from ablate.cli import main
sys.exit(main(args))
"""


def test_run_killed_mid_write_resumes_to_the_records_of_an_uninterrupted_run(tmp_path):
    path = write_experiment(tmp_path)
    killed, clean, marker = tmp_path / "killed", tmp_path / "clean", tmp_path / "in-write"
    script = tmp_path / "killed_run.py"
    script.write_text(KILLED_RUN)
    log = (tmp_path / "killed.log").open("w")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(script), str(marker), "run", str(path), "--out", str(killed)],
        stdout=log, stderr=log, env=env)
    deadline = time.monotonic() + 300
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), (tmp_path / "killed.log").read_text()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    # One job published, the second's temp file orphaned, the lock's owner file left.
    assert len(finished_jobs(killed)) == 1
    assert len(list((killed / RECORDS).glob(".*.tmp"))) == 1 and (killed / OWNER).exists()

    assert main(["run", str(path), "--out", str(killed)]) == 0
    assert main(["run", str(path), "--out", str(clean)]) == 0
    assert not list((killed / RECORDS).glob(".*.tmp"))
    resumed, uninterrupted = read_records(killed), read_records(clean)
    assert resumed.attrs["missing_jobs"] == [] and len(resumed) == 60
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    assert (killed / MANIFEST).read_text().count('"pid"') == 2  # two sessions recorded


def test_validate_takes_several_files_and_reports_each(tmp_path, capsys):
    good = write_experiment(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text().replace("eval_seeds", "eval_seed"))
    assert main(["validate", str(good), str(REPO / "experiments" / "quickstart.toml"),
                 "--no-checkpoints"]) == 0
    assert capsys.readouterr().out.count("structure OK") == 2
    assert main(["validate", str(good), str(bad), "--no-checkpoints"]) == 2
    captured = capsys.readouterr()
    assert "structure OK" in captured.out  # the good file is still checked and reported
    errors = captured.err.strip().splitlines()
    assert errors[0].startswith(f"error: {bad}: unknown key 'eval_seed'.")
    assert "Did you mean 'eval_seeds'?" in errors[0]
    assert errors[1] == "1 of 2 files failed"


def test_a_changed_stats_table_is_adopted_by_run_with_a_notice(tmp_path, capsys):
    path, run_dir = write_experiment(tmp_path), tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), "--limit", "1"]) == 0
    assert "note: [stats]" not in capsys.readouterr().out
    path.write_text(path.read_text() + "\n[stats]\nn_boot = 5000\n")
    assert main(["run", str(path), "--out", str(run_dir), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert (f"note: [stats] of {path} differs from the run's (n_boot 2000 -> 5000); adopted: "
            "stats and report use it (records are unchanged)") in out
    assert "4 jobs, 4 finished earlier" in out
    manifest = json.loads((run_dir / MANIFEST).read_text())
    assert manifest["config"]["stats"]["n_boot"] == 5000
    assert manifest["experiment_file"] == str(path)


def test_a_ctrl_c_no_command_handles_exits_130_with_a_line(monkeypatch, capsys):
    # typer turns a KeyboardInterrupt into exit code 130 without a word; main must return
    # that code (not 0) and say what happened.
    import ablate.cli.report_cmd as report_cmd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_cmd, "_analyze", interrupted)
    assert main(["stats", "runs/anything"]) == 130
    assert capsys.readouterr().err.startswith("interrupted:")


def test_validate_estimate_projects_time_and_memory_per_worker_count(tmp_path, capsys):
    # The estimate calibrates each group of equal jobs and prints one row per number of
    # jobs at once; --workers and --executor ray do not mix.
    experiment = write_experiment(tmp_path)
    assert main(["validate", str(experiment), "--estimate"]) == 0
    out = capsys.readouterr().out
    assert "estimate (calibrated on this machine" in out and "per job, peak" in out
    assert "(default)" in out
    assert main(["run", str(experiment), "--executor", "ray", "--workers", "2"]) == 2
    assert "--workers applies to the local machine" in capsys.readouterr().err


def test_a_generative_tasks_scoring_options_reach_its_evaluation_and_estimate(
        tmp_path, capsys, monkeypatch):
    # The job runner hands evaluate the task built with its options (its stops and
    # outcome), and the estimate decodes with the task's max_new_tokens (the default 256
    # leaves no room in these models' max_len = 256).
    import ablate.evaluation

    task = {"name": "synthetic", "split": "test", "limit": 2, "mode": "generative",
            "max_new_tokens": 8, "options": {"outcome": "flexible", "stop": ["\n"]}}
    experiment = write_experiment(tmp_path, tasks=[task], iterations=[1],
                                  interventions=[{"name": "svd_rank_k", "k": [1]}])
    assert main(["validate", str(experiment), "--estimate"]) == 0
    seen = []
    evaluate = ablate.evaluation.evaluate

    def recording(*args, **kwargs):
        seen.append(kwargs["task"])
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(ablate.evaluation, "evaluate", recording)
    assert main(["run", str(experiment), "--out", str(tmp_path / "run")]) == 0
    assert seen and all((t.outcome, t.stop) == ("flexible", ("\n",)) for t in seen)
    records = read_records(tmp_path / "run")
    assert (records["correct"] == records["correct_flexible"].astype(float)).all()
    assert not records["prediction"].str.contains("\n").any()
    config = json.loads((tmp_path / "run" / MANIFEST).read_text())["config"]
    assert config["tasks"][0]["options"]["outcome"] == "flexible"


def test_estimate_schedules_jobs_longest_first_and_prices_the_default_on_its_threads():
    # Invariant: N workers run one-thread jobs longest first; the default row (one job at
    # a time) is the jobs' total divided by the measured speed-up of the default threads.
    from ablate.executors.estimate import GroupEstimate, RunEstimate

    estimate = RunEstimate(groups=[GroupEstimate("long", ["a", "b"], 10.0, 0, 0.0),
                                   GroupEstimate("short", ["c", "d"], 4.0, 0, 0.0)],
                           threads=1, cores=2, default_threads=2, default_speedup=1.6)
    assert estimate.wall_seconds(2) == 14.0  # 10 + 4 on each worker
    assert estimate.wall_seconds(1) == 28.0 / 1.6


def test_estimate_prices_each_groups_default_on_the_threads_its_model_gets(tmp_path,
                                                                         monkeypatch):
    # Invariant: the default row's threads are the thread policy's for each group's
    # model: a model wider than SMALL_MATRIX gets the whole budget even on busy cores,
    # a small one the idle cores (here none: 1 thread).
    from ablate.executors import estimate as estimate_module
    from ablate.executors import threads as policy
    from ablate.experiment import load_experiment

    monkeypatch.setattr(estimate_module, "available_cores", lambda: 4)
    monkeypatch.setattr(policy, "free_cores", lambda: 0)
    seen: list[int] = []

    def calibrate(jobs, rows, threads, default_threads):
        seen.append(default_threads)
        group = estimate_module.GroupEstimate("g", [j.job_id for j in jobs], 1.0, 0, 0.0)
        return group, 1, 1.0

    monkeypatch.setattr(estimate_module, "_calibrate", calibrate)
    experiment = load_experiment(write_experiment(tmp_path)).resolve()
    for width, expected in ((policy.SMALL_MATRIX, 1), (policy.SMALL_MATRIX + 1, 4)):
        seen.clear()
        monkeypatch.setattr(estimate_module, "model_width", lambda model, w=width: w)
        found = estimate_module.estimate_run(experiment)
        assert seen and set(seen) == {expected} and found.default_threads == expected
        seen.clear()
        assert estimate_module.estimate_run(experiment, threads=1).default_threads == 1
        assert set(seen) == {1}
