"""The CODI rank-dynamics study: conditions, latent edits, records, the shipped study file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from ablate.codi.saving import load_codi, save_codi
from ablate.codi.study import LatentCondition, expand_latent_conditions, run_study, summarize
from ablate.codi.study_config import is_study_file, load_study, study_from_dict
from ablate.errors import AblateError
from ablate.stats.frames import pivot_condition, pivot_draws
from ablate.store import read_records
from tests.codi.conftest import tiny_codi

REPO = Path(__file__).resolve().parents[2]


def test_svd_edit_gives_the_best_rank_k_latent_and_only_where_targeted():
    Z = torch.randn(5, 4, 4, generator=torch.Generator().manual_seed(0))
    edit = LatentCondition("svd_rank_k", 2, target=1).edit(4, eval_seed=0)["latent.*"]
    assert edit(Z, "latent.0") is Z  # another latent: untouched
    edited = edit(Z, "latent.1").double().numpy()
    u, s, vt = np.linalg.svd(Z.double().numpy())
    best = (u[..., :2] * s[..., None, :2]) @ vt[..., :2, :]  # Eckart-Young, float64
    np.testing.assert_allclose(edited, best, atol=1e-5)


def test_random_edit_projects_onto_one_shared_k_dimensional_subspace():
    Z = torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(1))
    hook = LatentCondition("random_rank_k", 2, draw=0).edit(4, eval_seed=3)["latent.*"]
    edited = hook(Z, "latent.0")
    stacked = edited.permute(1, 0, 2).reshape(4, -1).double()  # all columns side by side
    assert int(torch.linalg.matrix_rank(stacked, atol=1e-5)) == 2
    again = LatentCondition("random_rank_k", 2, draw=0).edit(4, eval_seed=3)["latent.*"](
        Z, "latent.0")
    assert torch.equal(edited, again)  # reproducible from (eval seed, draw, k)


def test_conditions_keep_k_at_most_d_and_random_only_below_d():
    config = study_from_dict({"version": 1, "checkpoint": {"path": "x"},
                              "study": {"ks": [1, 4, 16], "targets": ["all", 0, 5],
                                        "random_draws": 2}})
    labels = [c.label for c in expand_latent_conditions(config, 3, d=4)]
    assert labels[0] == "none"
    assert "svd_rank_k@latent:k=4" in labels and "random_rank_k@latent:k=4:draw=0" not in labels
    assert "random_rank_k@latent.0:k=1:draw=1" in labels
    assert not any("k=16" in label or "latent.5" in label for label in labels)
    assert len(labels) == 1 + 2 * (2 + 2)  # none + 2 targets x (2 svd + 2 random draws)
    assert [c.label for c in expand_latent_conditions(config, 0, d=4)] == ["none"]


@pytest.fixture
def native_checkpoint(tmp_path) -> Path:
    return save_codi(tiny_codi(), tmp_path / "codi", metadata={"command": "test"})


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
        load_codi(tmp_path / "plain")


def test_study_records_fit_the_schema_and_count_problems_without_depth(native_checkpoint,
                                                                        tmp_path):
    data = tmp_path / "gsm8k"
    data.mkdir()
    rows = [{"question": "Ann has 3 pens. She buys 4 more. How many?",
             "answer": "3+4=<<3+4=7>>7\n#### 7"},
            {"question": "What is 2 and 2?", "answer": "It is four.\n#### 4"}]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = study_from_dict({
        "version": 1, "checkpoint": {"path": str(native_checkpoint), "label": "tiny"},
        "task": {"name": "gsm8k", "split": "test", "path": str(data)},
        "study": {"n_latents": [0, 2], "ks": [1, 4], "targets": ["all", 1], "random_draws": 1},
    })
    progress = RecordingProgress()
    result = run_study(config, tmp_path / "run", progress=progress)
    assert (result.n_jobs, result.n_items, result.n_depth_unknown) == (2, 2, 1)
    # Progress as `ablate run` reports it (the CLI shows counts and an ETA, not a spinner).
    assert progress.events[0] == ("start", 2, 0)
    assert [e for e in progress.events if e[0] == "job"] == [("job", j.job_id)
                                                           for j in progress.jobs]
    finished = [e for e in progress.events if e[0] == "records"]
    assert finished and all(done <= total for _, _, done, total in finished)
    assert finished[-1][2] == finished[-1][3]
    records = read_records(tmp_path / "run")
    assert set(records["config_label"]) == {"tiny-L0", "tiny-L2"}
    depth = records.drop_duplicates("item_id").set_index("item_id")["depth_annotations"]
    assert depth.isna().sum() == 1 and int(depth.dropna().iloc[0]) == 1
    with_latents = records[records["n_latents"] == 2]
    assert all(len(v) == 2 for v in with_latents["latent_erank"])
    cut = with_latents[with_latents["condition"] == "svd_rank_k@latent:k=1"]
    assert np.allclose(np.stack(cut["latent_erank"].to_numpy()), 1.0, atol=1e-4)
    # The statistics' adapters read these records directly.
    svd = pivot_condition(records, "correct", config_label="tiny-L2", intervention="svd_rank_k",
                          site="latent", k=1)
    draws = pivot_draws(records, "correct", config_label="tiny-L2",
                        intervention="random_rank_k", site="latent", k=1)
    assert svd.values.shape == (1, 2) and draws.values.shape == (1, 1, 2)
    assert isinstance(summarize(records), pd.DataFrame)
    again = run_study(config, tmp_path / "run")  # resumable: nothing left to do
    assert (again.n_run, again.n_skipped) == (0, 2)


class RecordingProgress:
    """``ablate.executors.RunProgress``, remembering what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.jobs: list = []

    def start(self, n_jobs: int, n_finished: int) -> None:
        self.events.append(("start", n_jobs, n_finished))

    def records_done(self, job, done: int, total: int) -> None:
        self.events.append(("records", job.job_id, done, total))

    def job_done(self, job) -> None:
        self.jobs.append(job)
        self.events.append(("job", job.job_id))


def test_the_shipped_study_file_loads():
    path = REPO / "experiments" / "codi_rank_dynamics.toml"
    assert is_study_file(tomllib.loads(path.read_text()))
    study = load_study(path)
    assert study.checkpoint.kind == "native"
    assert Path(study.checkpoint.path).is_dir()


def test_study_files_reject_unknown_keys_and_other_kinds():
    with pytest.raises(AblateError, match="unknown key"):
        study_from_dict({"version": 1, "checkpoint": {"path": "x"}, "study": {"k": [1]}})
    with pytest.raises(AblateError, match="unknown key 'n_latent'. Did you mean 'n_latents'?"):
        study_from_dict({"version": 1, "checkpoint": {"path": "x"}, "study": {"n_latent": [1]}})
    with pytest.raises(AblateError, match="not a CODI study"):
        study_from_dict({"version": 1, "kind": "grid", "checkpoint": {"path": "x"}})
