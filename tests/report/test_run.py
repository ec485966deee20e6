"""Reading a run for the statistics: settings from the run's [stats] table, and refusals of
records that mix configs (foreign job files, two checkpoints under one seed, several eval
seeds)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from ablate.errors import AblateError
from ablate.report import analysis_settings, load_records
from ablate.report.run import model_dims
from ablate.store import RECORDS, read_manifest, read_records
from tests.report.conftest import job_id, write_run


def test_settings_come_from_the_stats_table_and_options_override_them(run_dir):
    manifest = read_manifest(run_dir)
    settings = analysis_settings(manifest)
    # [stats] of conftest.write_run: tost_margin 0.05 (a fraction) is 5 pp for the analysis.
    assert (settings.seed, settings.n_boot, settings.level) == (7, 100, 0.95)
    assert settings.tost_margin_pp == pytest.approx(5.0)
    assert "[stats]" in settings.source
    overridden = analysis_settings(manifest, seed=3, n_boot=50)
    assert (overridden.seed, overridden.n_boot) == (3, 50)
    assert "--seed and --n-boot" in overridden.source
    defaults = analysis_settings({"config": {}})
    assert (defaults.seed, defaults.n_boot, defaults.tost_margin_pp) == (0, 2000, 2.0)
    with pytest.raises(AblateError, match="too small"):
        analysis_settings(manifest, n_boot=5)


def test_fewer_replicates_than_the_protocol_make_a_smoke_run(run_dir):
    # From [stats] (conftest: n_boot 100, smoke = true), or asked for with --n-boot.
    manifest = read_manifest(run_dir)
    assert analysis_settings(manifest).smoke is True
    assert analysis_settings(manifest, n_boot=2000).smoke is False
    plain = {"config": {"stats": {"n_boot": 2000}}}
    assert analysis_settings(plain).smoke is False
    assert analysis_settings(plain, n_boot=500).smoke is True


def test_the_matrix_size_of_each_head_comes_from_the_manifest():
    entries = [{"label": "multiprobe", "d": 16}, {"label": "multiprobe", "d": 16},
               {"label": "collapse", "d": 16}, {"label": "collapse", "d": 8},
               {"label": "old"}]
    assert model_dims({"checkpoints": entries}) == {"multiprobe": 16}


def test_missing_jobs_are_reported_and_finished_ones_read(tmp_path):
    run_dir = write_run(tmp_path / "run", heads=("multiprobe",), n_items=4, ks=(1,),
                        n_draws=1, skip_jobs=1)
    _, records, missing, _ = load_records(run_dir)
    assert missing == [job_id("multiprobe", 2, 3)]
    assert sorted(records["train_seed"].unique()) == [0, 1]


def _small_run(tmp_path, name="run"):
    return write_run(tmp_path / name, heads=("multiprobe",), seeds=(0, 1), n_items=4, ks=(1,),
                     n_draws=1)


def test_records_of_another_config_are_refused(tmp_path):
    run_dir, other = _small_run(tmp_path), _small_run(tmp_path, "other")
    stray = other / RECORDS / f"{job_id('multiprobe', 0, 3)}.parquet"
    frame = pd.read_parquet(stray).assign(job_id="from-another-run")
    frame.to_parquet(run_dir / RECORDS / "from-another-run.parquet")
    with pytest.raises(AblateError, match="another experiment config"):
        load_records(run_dir)


def test_two_checkpoints_under_one_seed_are_refused(tmp_path):
    run_dir = _small_run(tmp_path)
    path = run_dir / RECORDS / f"{job_id('multiprobe', 1, 3)}.parquet"
    frame = pd.read_parquet(path)
    frame.assign(train_seed=0).to_parquet(path)  # seed 1's checkpoint now claims seed 0
    with pytest.raises(AblateError, match="train_seed 0 names 2 checkpoints"):
        load_records(run_dir)


def test_several_eval_seeds_are_averaged_per_problem_unless_one_is_chosen(tmp_path):
    run_dir = write_run(tmp_path / "evals", heads=("multiprobe",), seeds=(0, 1), n_items=6,
                        ks=(1,), n_draws=1, eval_seeds=(0, 1))
    _, raw, _, _ = load_records(run_dir, eval_seed=0)
    _, records, _, chosen = load_records(run_dir)
    assert chosen is None and records.attrs["eval_seeds"] == [0, 1]
    assert len(records) == len(raw) and "eval_seed" not in records.columns
    # Each (seed, condition, problem) is the mean of its two eval seeds' outcomes.
    both = read_records(run_dir)
    expected = both.groupby(["train_seed", "condition", "item_id"])["correct"].mean()
    got = records.set_index(["train_seed", "condition", "item_id"])["correct"]
    assert got.sort_index().tolist() == expected.sort_index().tolist()
    _, records, _, chosen = load_records(run_dir, eval_seed=1)
    assert chosen == 1 and set(records["eval_seed"]) == {1}
    with pytest.raises(AblateError, match="--eval-seed 5 is not in"):
        load_records(run_dir, eval_seed=5)


def test_a_run_without_finished_jobs_says_how_to_start_it(tmp_path):
    run_dir = _small_run(tmp_path)
    shutil.rmtree(run_dir / RECORDS)
    (run_dir / RECORDS).mkdir()
    with pytest.raises(AblateError, match="no finished jobs yet.*ablate run"):
        load_records(run_dir)
