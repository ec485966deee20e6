"""CODI as a model kind of experiments: latent thoughts are hook points, conditions come
from the intervention registry, and jobs run through run_job into the run-directory format
that the statistics read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ablate.codi.loading import codi_format, load_codi_model
from ablate.codi.saving import load_codi, save_codi
from ablate.errors import AblateError
from ablate.executors import check_experiment, run_experiment
from ablate.experiment import Experiment
from ablate.grid import expand_jobs
from ablate.interventions import expand_conditions
from ablate.schema import CODI_COLUMNS, COLUMNS, EVALUATION_COLUMNS, JOB_COLUMNS
from ablate.stats.frames import pivot_condition, pivot_draws
from ablate.store import read_records
from tests.codi.conftest import tiny_codi


@pytest.fixture
def native_checkpoint(tmp_path) -> Path:
    return save_codi(tiny_codi(), tmp_path / "codi", metadata={"command": "test"})


def cut(table: dict, d: int = 4):
    return expand_conditions([table], d=d, n_layers=0, include_unablated=False)[0]


def test_native_checkpoint_round_trip_gives_the_same_latents(native_checkpoint, batch):
    original, loaded = tiny_codi(), load_codi(native_checkpoint)
    a = original.think(batch.question, 2).latents
    b = loaded.think(batch.question, 2).latents
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_a_plain_checkpoint_is_not_a_codi_checkpoint(tmp_path):
    from ablate.checkpoint import save_checkpoint

    codi = tiny_codi()
    save_checkpoint(codi.thinker, codi.tokenizer, tmp_path / "plain", metadata={})
    with pytest.raises(AblateError, match="not a native CODI checkpoint"):
        load_codi_model(tmp_path / "plain")


@torch.no_grad()
def test_a_latent_hook_edits_the_thought_the_model_reads_next(codi, batch):
    plain = codi.think(batch.question, 3).latents
    with codi.hooks(cut({"name": "svd_rank_k", "site": "latent.1", "k": 1}).hooks(eval_seed=0)):
        edited = codi.think(batch.question, 3).latents
    assert torch.equal(edited[0], plain[0])  # before the cut: untouched
    u, s, vt = np.linalg.svd(plain[1].double().numpy())
    best = (u[..., :1] * s[..., None, :1]) @ vt[..., :1, :]  # Eckart-Young, float64
    np.testing.assert_allclose(edited[1].double().numpy(), best, atol=1e-5)
    assert not torch.allclose(edited[2], plain[2])  # the next thought read the cut one
    assert torch.equal(codi.think(batch.question, 3).latents[2], plain[2])  # hooks removed


@torch.no_grad()
def test_a_random_latent_cut_keeps_every_thought_in_one_k_dimensional_subspace(codi, batch):
    with codi.hooks(cut({"name": "random_rank_k", "site": "latent", "k": 2}).hooks(3)):
        latents = torch.stack(codi.think(batch.question, 3).latents)  # (3, B, d, d)
    columns = latents.permute(2, 0, 1, 3).reshape(4, -1).double()  # every column side by side
    assert int(torch.linalg.matrix_rank(columns, atol=1e-5)) == 2


def gsm8k_dir(tmp_path: Path) -> Path:
    data = tmp_path / "gsm8k"
    data.mkdir(parents=True)
    rows = [{"question": "Ann has 3 pens. She buys 4 more. How many?",
             "answer": "3+4=<<3+4=7>>7\n#### 7"},
            {"question": "What is 2 and 2?", "answer": "It is four.\n#### 4"}]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def codi_experiment(checkpoint: Path, tmp_path: Path, **top) -> Experiment:
    data = {"version": 1, "name": "tiny-codi",
            "checkpoints": [{"path": str(checkpoint), "label": "tiny", "train_seed": 0,
                             "model": "codi"}],
            "tasks": [{"name": "gsm8k", "path": str(gsm8k_dir(tmp_path)),
                       "mode": "generative"}],
            "n_latents": [0, 2],
            "interventions": [{"name": "svd_rank_k", "site": "latent", "k": [1, 4]},
                              {"name": "random_rank_k", "site": "latent", "k": 1},
                              {"name": "svd_rank_k", "site": "latent.1", "k": 1}],
            **top}
    return Experiment.from_dict(data, source=str(tmp_path / "exp.toml")).resolve()


def test_codi_jobs_write_the_record_schema_and_the_statistics_read_it(native_checkpoint,
                                                                      tmp_path):
    experiment = codi_experiment(native_checkpoint, tmp_path)
    summary = check_experiment(experiment)
    # L0: the unablated condition only; L2: + svd k=1, k=4 (identity at d = 4), random k=1,
    # svd k=1 at latent.1. One of the two problems has no calculator annotation.
    assert summary.per_latents == {0: 1, 2: 5} and summary.n_evaluations == 2 * 1 + 2 * 5
    assert any("1 of 2 gsm8k/test problems have no calculator annotations" in note
               for note in summary.notes)
    progress = RecordingProgress()
    result = run_experiment(experiment, tmp_path / "run", progress=progress)
    assert (result.n_jobs, result.n_run) == (2, 2)
    assert progress.events[0] == ("start", 2, 0)
    finished = [e for e in progress.events if e[0] == "records"]
    assert finished[-1][2] == finished[-1][3] == 10
    records = read_records(tmp_path / "run")
    assert list(records.columns) == [*JOB_COLUMNS, *EVALUATION_COLUMNS, *CODI_COLUMNS]
    for column in records.columns:
        if COLUMNS[column].dtype != "object":
            assert str(records[column].dtype) == COLUMNS[column].dtype, column
    assert set(records["config_label"]) == {"tiny-L0", "tiny-L2"}
    assert (records["n_iterations"] == 2).all() and (records["model_kind"] == "native").all()
    depth = records.drop_duplicates("item_id").set_index("item_id")["depth_annotations"]
    assert depth.isna().sum() == 1 and int(depth.dropna().iloc[0]) == 1
    with_latents = records[records["n_latents"] == 2]
    assert all(len(v) == 2 for v in with_latents["latent_erank"])
    every = with_latents[with_latents["condition"] == "svd_rank_k@latent:k=1"]
    assert np.allclose(np.stack(every["latent_erank"].to_numpy()), 1.0, atol=1e-4)
    second = with_latents[with_latents["site"] == "latent.1"]
    assert (second["latent_index"] == 1).all() and every["latent_index"].isna().all()
    svd = pivot_condition(records, "correct", config_label="tiny-L2", intervention="svd_rank_k",
                          site="latent", k=1)
    draws = pivot_draws(records, "correct", config_label="tiny-L2",
                        intervention="random_rank_k", site="latent", k=1)
    assert svd.values.shape == (1, 2) and draws.values.shape == (1, 1, 2)
    again = run_experiment(experiment, tmp_path / "run")  # resumable: nothing left to do
    assert (again.n_run, again.n_skipped) == (0, 2)


class RecordingProgress:
    """``ablate.executors.RunProgress``, remembering what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def start(self, n_jobs: int, n_finished: int) -> None:
        self.events.append(("start", n_jobs, n_finished))

    def records_done(self, job, done: int, total: int) -> None:
        self.events.append(("records", job.job_id, done, total))

    def job_done(self, job) -> None:
        self.events.append(("job", job.job_id))


def test_k_above_d_is_refused_unless_keep_k_leaves_it_out(native_checkpoint, tmp_path):
    big = {"name": "svd_rank_k", "site": "latent", "k": [2, 8]}
    with pytest.raises(AblateError, match="k=8 but checkpoint .* has d=4.*keep_k"):
        check_experiment(codi_experiment(native_checkpoint, tmp_path, interventions=[big]))
    kept = codi_experiment(native_checkpoint, tmp_path / "b",
                           interventions=[{**big, "keep_k": "<= d"}])
    assert check_experiment(kept).per_latents == {0: 1, 2: 2}


@pytest.mark.parametrize("change, message", [
    ({"iterations": [1]}, "'iterations' does not apply here"),
    ({"n_latents": None}, "'n_latents' is required"),
    ({"tasks": [{"name": "synthetic"}]}, "CODI checkpoints answer after their latent"),
    ({"interventions": [{"name": "svd_rank_k", "k": 1}]},
     "CODI checkpoints take the sites 'latent' and 'latent.j'"),
    ({"checkpoints": [{"path": "x", "label": "a", "model": "codi",
                       "overrides": {"attention": "3d"}}]}, "unknown key 'attention'"),
    ({"checkpoints": [{"path": "x", "label": "a", "model": "codi"},
                      {"path": "y", "label": "b"}]}, "mix models codi and thinker"),
    ({"checkpoints": [{"path": "x", "label": "a", "model": "gpt"}]}, "use one of thinker, codi"),
])
def test_codi_experiments_refuse_what_does_not_fit_the_model_kind(change, message):
    data = {"version": 1, "name": "c", "n_latents": [2],
            "checkpoints": [{"path": "x", "label": "a", "model": "codi"}],
            "tasks": [{"name": "synthetic", "mode": "generative"}]}
    data = {key: value for key, value in {**data, **change}.items() if value is not None}
    with pytest.raises(AblateError, match=message):
        Experiment.from_dict(data)


@pytest.mark.parametrize("change, message", [
    ({"interventions": [{"name": "svd_rank_k", "site": "latent", "k": 1}]},
     "latent sites act on CODI checkpoints only"),
    ({"n_latents": [2]}, "n_latents is the grid axis of CODI checkpoints"),
    ({"tasks": [{"name": "synthetic", "max_question_tokens": 8}]},
     "max_question_tokens' applies to CODI checkpoints only"),
])
def test_thinker_experiments_refuse_codi_settings(change, message):
    data = {"version": 1, "name": "t", "iterations": [1],
            "checkpoints": [{"path": "x", "label": "a"}], "tasks": [{"name": "synthetic"}]}
    with pytest.raises(AblateError, match=message):
        Experiment.from_dict({**data, **change})


def test_the_one_loader_tells_native_from_research_by_the_path(native_checkpoint, tmp_path):
    assert codi_format(native_checkpoint) == "native"
    assert codi_format(native_checkpoint / "model.safetensors") == "native"
    assert codi_format(tmp_path / "best.pt") == "research"
    with pytest.raises(AblateError, match="native CODI checkpoint, not research"):
        load_codi_model(native_checkpoint, kind="research")
    with pytest.raises(AblateError, match="remove tokenizer"):
        load_codi_model(native_checkpoint, tokenizer=str(tmp_path))


def test_new_syntax_jobs_are_named_by_latents_and_a_content_hash(native_checkpoint, tmp_path):
    jobs = expand_jobs(codi_experiment(native_checkpoint, tmp_path))
    assert [j.job_id.rsplit("__", 1)[0] for j in jobs] == [
        "tiny-s0__gsm8k-test-codi__L0__e0", "tiny-s0__gsm8k-test-codi__L2__e0"]
    assert [(j.n_latents, j.n_iterations) for j in jobs] == [(0, None), (2, None)]
