"""Experiment files: parsing errors, round trip, path resolution, hash, job expansion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomli_w
import tomllib

from ablate.errors import AblateError
from ablate.executors import check_experiment
from ablate.experiment import (
    Experiment,
    StatsSettings,
    load_experiment,
    read_stats_table,
    stats_changes,
)
from ablate.grid import expand_jobs

BASE = {
    "version": 1,
    "name": "unit",
    "checkpoints": [{"path": "ckpt/multiprobe-seed*", "label": "multiprobe"}],
    "interventions": [{"name": "svd_rank_k", "k": [1, 2]},
                      {"name": "random_rank_k", "k": [1], "draws": 2}],
    "tasks": [{"name": "synthetic", "split": "test", "limit": 4}],
    "eval_seeds": [0, 1],
    "iterations": [1, 3],
    "stats": {"tost_margin": 0.02, "level": 0.95, "n_boot": 200, "smoke": True},
}


def write(tmp_path: Path, data: dict, name: str = "exp.toml") -> Path:
    for seed in (0, 1):
        (tmp_path / "ckpt" / f"multiprobe-seed{seed}").mkdir(parents=True, exist_ok=True)
    path = tmp_path / name
    path.write_text(tomli_w.dumps(data))
    return path


def changed(**top) -> dict:
    return {**BASE, **top}


def test_file_round_trips_through_dict_and_toml(tmp_path):
    experiment = load_experiment(write(tmp_path, BASE))
    again = Experiment.from_dict(tomllib.loads(experiment.to_toml()))
    assert again == experiment
    assert experiment.to_dict()["checkpoints"] == BASE["checkpoints"]


@pytest.mark.parametrize("data, key, allowed", [
    (changed(colour="red"), "colour", "eval_seeds"),
    (changed(checkpoints=[{"path": "x", "label": "m", "seed": 0}]), "seed", "train_seed"),
    (changed(checkpoints=[{"path": "x", "label": "m", "overrides": {"head": "collapse"}}]),
     "head", "n_heads"),
    (changed(tasks=[{"name": "synthetic", "shots": 2}]), "shots", "few_shot"),
    (changed(stats={"alpha": 0.05}), "alpha", "tost_margin"),
])
def test_unknown_keys_name_the_key_file_and_allowed_keys(tmp_path, data, key, allowed):
    path = write(tmp_path, data)
    with pytest.raises(AblateError) as err:
        load_experiment(path)
    message = str(err.value)
    assert f"'{key}'" in message and str(path) in message and allowed in message


@pytest.mark.parametrize("data, fragment", [
    ({k: v for k, v in BASE.items() if k != "version"}, "'version' is required"),
    (changed(version=2), "reads version 1"),
    (changed(batch_size="16"), "'batch_size' must be int"),
    (changed(iterations=[]), "non-empty list"),
    (changed(eval_seeds=[0, 0]), "repeated"),
    (changed(tasks=[{"name": "synthetic", "mode": "greedy"}]), "teacher_forced, generative"),
    (changed(tasks=[]), "at least one [[tasks]]"),
    (changed(name="my run"), "letters, digits"),
    (changed(stats={"level": 1.5}), "strictly between 0 and 1"),
    (changed(device="gpu7"), "not a torch device"),
    (changed(interventions=[{"name": "svd_rank_k", "k": [1], "draws": 3}]), "unknown key(s) draws"),
    (changed(interventions=[{"name": "svd_rank", "k": [1]}]), "Did you mean 'svd_rank_k'"),
    (changed(interventions=[{"name": "svd_rank_k", "k": [1], "site": "head_out"}]),
     "Unknown hook site 'head_out'"),
])
def test_bad_values_are_one_line_errors_naming_the_file(tmp_path, data, fragment):
    path = write(tmp_path, data)
    with pytest.raises(AblateError) as err:
        load_experiment(path)
    assert fragment in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("data, hint", [
    (changed(eval_seed=[0]), "Did you mean 'eval_seeds'?"),
    (changed(iteration=[4]), "Did you mean 'iterations'?"),
    (changed(tasks=[{"name": "synthetic", "limt": 5}]), "Did you mean 'limit'?"),
    (changed(stats={"nboot": 100}), "Did you mean 'n_boot'?"),
    (changed(checkpoints=[{"path": "x", "lable": "m"}]), "Did you mean 'label'?"),
    (changed(interventions=[{"name": "random_rank_k", "k": [1], "norm_match": True}]),
     "Did you mean 'norm_matched'?"),
    (changed(tasks=[{"name": "synthetic", "options": {"max_valu": 5}}]),
     "Did you mean 'max_value'?"),
])
def test_unknown_keys_suggest_the_closest_allowed_key(tmp_path, data, hint):
    path = write(tmp_path, data)
    with pytest.raises(AblateError) as err:
        experiment = load_experiment(path)
        check_experiment(experiment, checkpoints=False)  # task options are checked here
    assert hint in str(err.value) and "\n" not in str(err.value)


def test_stats_table_changes_are_listed_and_read_alone(tmp_path):
    assert stats_changes(None, vars(StatsSettings())) == []  # defaults = no table
    assert stats_changes({"n_boot": 2000, "seed": 0}, {"n_boot": 5000, "seed": 0}) == [
        "n_boot 2000 -> 5000"]
    path = write(tmp_path, changed(stats={"n_boot": 5000}))
    assert read_stats_table(path) == StatsSettings(n_boot=5000)
    with pytest.raises(AblateError, match="must be >= 1"):
        read_stats_table(write(tmp_path, changed(stats={"n_boot": 0})))


def test_fewer_than_2000_replicates_need_the_smoke_flag(tmp_path):
    # The protocol's minimum is B = 2000; a smoke run (tests, a quick look) says so.
    with pytest.raises(AblateError) as err:
        load_experiment(write(tmp_path, changed(stats={"n_boot": 500})))
    message = str(err.value)
    assert "'n_boot' is 500, below the protocol's minimum of 2000" in message
    assert "add smoke = true to [stats]" in message and "\n" not in message
    smoke = load_experiment(write(tmp_path, changed(stats={"n_boot": 500, "smoke": True})))
    assert smoke.stats == StatsSettings(n_boot=500, smoke=True)
    assert load_experiment(write(tmp_path, changed(stats={"n_boot": 2000}))).stats.smoke is False
    with pytest.raises(AblateError, match="'n_boot' must be >= 10"):
        load_experiment(write(tmp_path, changed(stats={"n_boot": 5, "smoke": True})))


def test_invalid_toml_and_missing_file_are_user_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("version = \n")
    with pytest.raises(AblateError, match="not valid TOML"):
        load_experiment(bad)
    with pytest.raises(AblateError, match="not found"):
        load_experiment(tmp_path / "absent.toml")


def test_glob_resolves_against_the_file_directory_and_reads_seeds(tmp_path, monkeypatch):
    path = write(tmp_path, BASE)
    monkeypatch.chdir(tmp_path.parent)  # the cwd must not matter
    resolved = load_experiment(path).resolve()
    assert [(c.path, c.train_seed) for c in resolved.checkpoints] == [
        (str(tmp_path / "ckpt" / f"multiprobe-seed{s}"), s) for s in (0, 1)]


def test_resolution_errors(tmp_path):
    no_match = changed(checkpoints=[{"path": "real/round2-seed*/best.pt", "label": "m"}])
    with pytest.raises(AblateError, match="--no-checkpoints"):
        load_experiment(write(tmp_path, no_match)).resolve()
    seed_on_glob = changed(checkpoints=[{"path": "ckpt/*", "label": "m", "train_seed": 3}])
    with pytest.raises(AblateError, match="remove train_seed"):
        load_experiment(write(tmp_path, seed_on_glob)).resolve()
    twice = changed(checkpoints=[{"path": "ckpt/multiprobe-seed0", "label": "m"},
                                 {"path": "ckpt/multiprobe-seed1", "label": "m", "train_seed": 0}])
    with pytest.raises(AblateError, match="distinct label or seed"):
        load_experiment(write(tmp_path, twice)).resolve()
    missing = changed(checkpoints=[{"path": "ckpt/absent", "label": "m", "train_seed": 0}])
    with pytest.raises(AblateError, match="does not exist"):
        load_experiment(write(tmp_path, missing)).resolve()


def test_limit_caps_every_task(tmp_path):
    data = changed(tasks=[{"name": "synthetic", "limit": 4},
                          {"name": "synthetic", "split": "train"}])
    resolved = load_experiment(write(tmp_path, data)).resolve(limit=2)
    assert [t.limit for t in resolved.tasks] == [2, 2]
    assert [t.limit for t in load_experiment(write(tmp_path, data)).resolve().tasks] == [4, None]


def test_hash_is_stable_and_covers_only_what_changes_records(tmp_path):
    def digest(data: dict, name: str = "exp.toml") -> str:
        return load_experiment(write(tmp_path, data, name)).resolve().config_hash()

    reference = digest(BASE)
    assert re.fullmatch(r"[0-9a-f]{64}", reference)
    # Key order in the file is not part of the config.
    assert digest(dict(reversed(list(BASE.items())))) == reference
    assert digest(changed(device="cuda", batch_size=3,
                          stats={"n_boot": 10, "smoke": True})) == reference
    assert digest(changed(iterations=[1, 4])) != reference
    assert digest(changed(interventions=[{"name": "svd_rank_k", "k": [1]}])) != reference
    assert load_experiment(write(tmp_path, BASE)).resolve(limit=2).config_hash() != reference


def test_jobs_cover_the_grid_with_deterministic_readable_ids(tmp_path):
    path = write(tmp_path, BASE)
    jobs = expand_jobs(load_experiment(path).resolve())
    again = expand_jobs(load_experiment(path).resolve())
    # 2 checkpoints x 1 task x 2 T x 2 eval seeds; every condition runs inside each job.
    assert len(jobs) == 8 and [j.job_id for j in jobs] == [j.job_id for j in again]
    assert len({j.job_id for j in jobs}) == 8
    assert re.fullmatch(r"multiprobe-s0__synthetic-test-teacher_forced__T1__e0__[0-9a-f]{8}",
                        jobs[0].job_id)
    assert [(j.checkpoint.train_seed, j.n_iterations, j.eval_seed) for j in jobs[:4]] == [
        (0, 1, 0), (0, 1, 1), (0, 3, 0), (0, 3, 1)]
    assert all(j.interventions == tuple(BASE["interventions"]) for j in jobs)
    columns = jobs[0].columns()
    assert columns["config_label"] == "multiprobe" and columns["n_iterations"] == 1
    other = expand_jobs(load_experiment(write(tmp_path, changed(
        interventions=[{"name": "svd_rank_k", "k": [1]}]))).resolve())
    # The hash suffix tells grids with other conditions apart; the readable part does not.
    assert other[0].job_id != jobs[0].job_id
    assert other[0].job_id.rsplit("__", 1)[0] == jobs[0].job_id.rsplit("__", 1)[0]


def _grid_experiments() -> list[Path]:
    """Shipped experiment files (a CODI study file round-trips as the experiment it
    describes)."""
    return sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))


@pytest.mark.parametrize("path", _grid_experiments(), ids=lambda p: p.name)
def test_every_shipped_experiment_loads_and_round_trips(path):
    experiment = load_experiment(path)
    assert Experiment.from_dict(tomllib.loads(experiment.to_toml()), source=str(path)) == experiment
