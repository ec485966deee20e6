"""``ablate codi`` through ``ablate.cli.main``: train -> inspect -> eval, one-line errors, the
``ablate train --codi`` alias and study files under ``ablate validate`` / ``ablate run``."""

from __future__ import annotations

import json
from pathlib import Path

from ablate.cli import expand_aliases, main
from ablate.codi.saving import load_codi
from ablate.store import read_records

BUNDLED_CODI = Path(__file__).resolve().parents[2] / "checkpoints" / "codi-synthetic"


def test_train_then_inspect_then_eval(tmp_path, capsys):
    out = tmp_path / "codi"
    args = ["codi", "train", "--steps", "2", "--batch-size", "2", "--eval-items", "2",
            "--mat-dim", "4", "--latents", "2", "--task-option", "n_items=20", "--out", str(out)]
    assert main(args) == 0
    assert "accuracy" in capsys.readouterr().out
    codi = load_codi(out)
    assert codi.settings.n_latents == 2 and codi.mat_dim == 4

    assert main(["codi", "inspect", str(out)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["metrics"]["steps"] == 2 and facts["settings"]["projection"] == "network"
    assert "ablate codi train" in facts["command"] or "codi train" in facts["command"]

    assert main(["codi", "eval", str(out), "--limit", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_items"] == 3 and 0.0 <= report["accuracy"] <= 1.0
    # Without --task, eval reads the training distribution recorded in the checkpoint.
    assert report["task"] == "synthetic" and report["task_options"]["n_items"] == 20
    assert report["task_options"]["max_value"] == 5
    assert len(report["latent_erank_mean"]) == 2


def test_a_directory_without_codi_files_is_one_error_line(tmp_path, capsys):
    assert main(["codi", "eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a native CODI checkpoint" in err
    assert "\n" not in err


def test_train_codi_is_an_alias_of_codi_train():
    # The rewrite keeps root options in front and every CODI flag after `codi train`.
    assert expand_aliases(["--debug", "train", "--codi", "--steps", "2"]) == [
        "--debug", "codi", "train", "--steps", "2"]
    assert expand_aliases(["train", "--steps", "2"]) == ["train", "--steps", "2"]
    assert expand_aliases(["codi", "eval", "x"]) == ["codi", "eval", "x"]


def test_ablate_train_codi_writes_a_codi_checkpoint(tmp_path, capsys):
    out = tmp_path / "codi"
    assert main(["train", "--codi", "--steps", "1", "--batch-size", "2", "--eval-items", "2",
                 "--mat-dim", "4", "--latents", "1", "--task-option", "n_items=20",
                 "--out", str(out)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert load_codi(out).settings.n_latents == 1


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(f"""version = 1
kind = "codi_study"
name = "tiny-study"
[checkpoint]
path = "{BUNDLED_CODI}"
label = "codi-synthetic"
[task]
name = "synthetic"
limit = 3
options = {{ min_depth = 1, max_depth = 3, max_value = 5, max_total = 10, n_items = 20000 }}
[study]
n_latents = [0, 2]
ks = [1]
targets = ["all"]
random_draws = 1
""")
    return path


def test_validate_and_run_accept_a_study_file_and_run_it_resumably(tmp_path, capsys):
    study, run_dir = _study_file(tmp_path), tmp_path / "run"
    assert main(["validate", str(study)]) == 0
    out = capsys.readouterr().out
    assert "is a CODI study file" in out and "3 items" in out and "next: ablate run" in out
    assert "0 latents: 1, 2 latents: 3" in out
    assert main(["run", str(study), "--out", str(run_dir)]) == 0
    assert "(2 jobs; 12 item x condition evaluations)" in capsys.readouterr().out
    records = read_records(run_dir)
    # L0: the unablated condition only; L2: unablated, svd k=1 and one random k=1 draw.
    assert sorted(records.groupby("n_latents").size().to_dict().items()) == [(0, 3), (2, 9)]
    # `ablate codi study` is `ablate run` under another name: it resumes the same run.
    assert main(["codi", "study", str(study), "--out", str(run_dir)]) == 0
    assert "2 finished earlier" in capsys.readouterr().out
