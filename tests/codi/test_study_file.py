"""CODI study files (kind = "codi_study") load as experiments of a CODI checkpoint that
keep the study's conditions, config hash and job ids, so the study's records and run
directories stay what the study runner wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from ablate.codi.records import latent_conditions
from ablate.codi.study_file import read_study, study_experiment
from ablate.errors import AblateError
from ablate.experiment import CODI, Experiment, load_experiment
from ablate.grid import expand_jobs
from ablate.interventions import expand_conditions

REPO = Path(__file__).resolve().parents[2]

# Golden values from the study runner before the translation (ablate.codi.study_config and
# ablate.codi.study at commit 9367570), for paths that need no checkout.
STUDY = {"version": 1, "kind": "codi_study", "name": "tiny",
         "checkpoint": {"path": "/data/codi", "label": "tiny", "train_seed": 3},
         "task": {"name": "gsm8k", "path": "/data/gsm8k", "limit": 5},
         "study": {"n_latents": [0, 2], "ks": [1, 4], "targets": ["all", 1], "random_draws": 2,
                   "eval_seeds": [0, 1], "batch_size": 7, "device": "cpu"}}
STUDY_HASH = "d0307d435be86dbcfa7ec992cee33d54a6b7e85aa92ee1e4505809a75e2d4021"
STUDY_JOBS = ["tiny-s3__gsm8k-test-codi__L0__e0__d0307d43",
              "tiny-s3__gsm8k-test-codi__L0__e1__d0307d43",
              "tiny-s3__gsm8k-test-codi__L2__e0__d0307d43",
              "tiny-s3__gsm8k-test-codi__L2__e1__d0307d43"]
RESEARCH = {"version": 1, "checkpoint": {"path": "/data/best.pt", "kind": "research",
                                         "tokenizer": "/models/gpt2", "n_head": 4}}
RESEARCH_HASH = "263ab2192876ad93c53feea4753cf8f3d749ec776ede7d76be79ff6812bafb81"
# expand_latent_conditions(ks [1, 4, 16], targets ["all", 0, 5], 2 draws) at d = 4:
# SVD for k <= d, random for k < d, nothing for k > d, latent.j only for j < n_latents.
CONDITIONS_L3 = ["none", "svd_rank_k@latent:k=1", "random_rank_k@latent:k=1:draw=0",
                 "random_rank_k@latent:k=1:draw=1", "svd_rank_k@latent:k=4",
                 "svd_rank_k@latent.0:k=1", "random_rank_k@latent.0:k=1:draw=0",
                 "random_rank_k@latent.0:k=1:draw=1", "svd_rank_k@latent.0:k=4"]
CONDITIONS_L6 = CONDITIONS_L3 + ["svd_rank_k@latent.5:k=1", "random_rank_k@latent.5:k=1:draw=0",
                                 "random_rank_k@latent.5:k=1:draw=1", "svd_rank_k@latent.5:k=4"]


def translated(data: dict) -> Experiment:
    study = read_study(data, "study.toml")
    return Experiment.from_dict(study_experiment(study), source="study.toml")


def test_a_study_keeps_its_hash(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(STUDY))
    experiment = load_experiment(path)
    assert experiment.model == CODI and experiment.codi_study is not None
    assert experiment.config_hash() == STUDY_HASH
    research = tmp_path / "research.toml"
    research.write_text(tomli_w.dumps(RESEARCH))
    assert load_experiment(research).config_hash() == RESEARCH_HASH


def test_a_resolved_study_names_its_jobs_as_the_study_runner_did(tmp_path):
    checkpoint = tmp_path / "codi"
    checkpoint.mkdir()
    data = {**STUDY, "checkpoint": {**STUDY["checkpoint"], "path": str(checkpoint)}}
    path = tmp_path / "study.toml"
    path.write_text(tomli_w.dumps(data))
    resolved = load_experiment(path).resolve()
    jobs = expand_jobs(resolved)
    # The readable part as the runner wrote it; the suffix is the study's hash, which holds
    # this checkout's path (pinned above for a path that needs none).
    assert [j.job_id.rsplit("__", 1)[0] for j in jobs] == [
        j.rsplit("__", 1)[0] for j in STUDY_JOBS]
    assert {j.job_id.rsplit("__", 1)[1] for j in jobs} == {resolved.config_hash()[:8]}
    assert [j.label for j in jobs] == ["tiny-L0", "tiny-L0", "tiny-L2", "tiny-L2"]
    # --limit replaces the study's limit (as `ablate codi study --limit` did), so the hash.
    limited = load_experiment(path).resolve(limit=9)
    assert limited.tasks[0].limit == 9 and limited.config_hash() != resolved.config_hash()


@pytest.mark.parametrize("n_latents, d, expected", [
    (3, 4, CONDITIONS_L3), (6, 4, CONDITIONS_L6), (0, 4, ["none"]), (3, None, ["none"])])
def test_the_translation_keeps_the_study_conditions(n_latents, d, expected):
    experiment = translated({"version": 1, "checkpoint": {"path": "x"},
                             "study": {"ks": [1, 4, 16], "targets": ["all", 0, 5],
                                       "random_draws": 2}})
    conditions = expand_conditions(list(experiment.interventions), d=d or 4, n_layers=0)
    assert [c.label for c in latent_conditions(conditions, n_latents, d)] == expected


STUDY_FILE = REPO / "tests" / "codi" / "data" / "codi_study.toml"  # as once shipped


def test_the_once_shipped_study_file_loads_as_an_experiment_of_its_checkpoint():
    experiment = load_experiment(STUDY_FILE).resolve()
    assert experiment.model == CODI and Path(experiment.checkpoints[0].path).is_dir()
    assert experiment.n_latents == (0, 6) and experiment.tasks[0].mode == "generative"


def test_study_files_reject_unknown_keys_and_other_kinds():
    with pytest.raises(AblateError, match="unknown key"):
        read_study({"version": 1, "checkpoint": {"path": "x"}, "study": {"k": [1]}}, "s.toml")
    with pytest.raises(AblateError, match="unknown key 'n_latent'. Did you mean 'n_latents'?"):
        read_study({"version": 1, "checkpoint": {"path": "x"}, "study": {"n_latent": [1]}},
                   "s.toml")
    with pytest.raises(AblateError, match="a CODI study file has kind"):
        read_study({"version": 1, "kind": "grid", "checkpoint": {"path": "x"}}, "s.toml")
    with pytest.raises(AblateError, match="targets"):
        read_study({"version": 1, "checkpoint": {"path": "x"}, "study": {"targets": [-1]}},
                   "s.toml")


def test_the_study_file_and_the_shipped_experiment_write_the_same_records(tmp_path):
    # experiments/codi_rank_dynamics.toml is the old study file in experiment syntax.
    from ablate.executors import run_experiment
    from ablate.store import read_records

    study = load_experiment(STUDY_FILE).resolve(limit=3)
    shipped = load_experiment(REPO / "experiments" / "codi_rank_dynamics.toml").resolve(limit=3)
    assert shipped.codi_study is None and study.codi_study is not None
    assert shipped.config_hash() != study.config_hash()
    frames = []
    for name, experiment in (("study", study), ("experiment", shipped)):
        run_experiment(experiment, tmp_path / name)
        records = read_records(tmp_path / name).drop(columns="job_id")
        keys = ["config_label", "condition", "item_id"]
        frames.append(records.sort_values(keys).reset_index(drop=True))
    assert len(frames[0]) == 3 * (1 + 31)  # L0: unablated; L6: + 3 sites x (4 SVD + 6 random)
    pd.testing.assert_frame_equal(frames[1], frames[0])
