"""``ablate codi`` through ``ablate.cli.main``: train -> inspect -> eval, and one-line errors."""

from __future__ import annotations

import json

from ablate.cli import main
from ablate.codi.saving import load_codi


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
    assert len(report["latent_erank_mean"]) == 2


def test_a_directory_without_codi_files_is_one_error_line(tmp_path, capsys):
    assert main(["codi", "eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a native CODI checkpoint" in err
    assert "\n" not in err
