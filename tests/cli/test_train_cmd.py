"""``ablate train``: one-line errors with exit code 2, seed lists, and a tiny real run."""

from __future__ import annotations

import json

import pytest
import torch

from ablate.checkpoint import META_FILE
from ablate.cli import main
from ablate.cli.train_cmd import output_for_seed, parse_seeds
from ablate.errors import AblateError

TINY = [
    "--mat-dim",
    "4",
    "--layers",
    "1",
    "--heads",
    "2",
    "--iterations",
    "2",
    "--max-len",
    "32",
    "--seq-len",
    "16",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--batch-size",
    "2",
    "--data",
    "synthetic:n_items=30,max_depth=1",
    "--train-items",
    "20",
    "--val-items",
    "3",
    "--device",
    "cpu",
    "--threads",
    "1",
]


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_unknown_variant_is_a_one_line_error_with_exit_2(tmp_path, capsys):
    assert main(["train", "--variant", "round3", "--out", str(tmp_path / "x")]) == 2
    err = one_line_error(capsys)
    assert "Unknown variant 'round3'" in err and "round2_frobenius_multiprobe" in err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("data", ["text:/no/such/corpus.txt", "gsm8k:/no/such/dir", "wikitext"])
def test_bad_data_is_a_one_line_error_with_exit_2(tmp_path, capsys, data):
    assert main(["train", "--data", data, "--out", str(tmp_path / "x")]) == 2
    err = one_line_error(capsys)
    assert ("does not exist" in err and data.split(":", 1)[1] in err) or "not understood" in err


def test_bad_numbers_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--mat-dim", "6", "--heads", "4", "--out", str(tmp_path)]) == 2
    assert "does not divide" in one_line_error(capsys)
    assert main(["train", "--seed", "0,x", "--out", str(tmp_path)]) == 2
    assert "--seed 'x'" in one_line_error(capsys)


def test_seed_lists_and_output_directories():
    assert parse_seeds(["0", "1,2"]) == [0, 1, 2]
    with pytest.raises(AblateError, match="twice"):
        parse_seeds(["1,1"])
    assert output_for_seed("ckpt/mp-seed{seed}", 2, 3) == "ckpt/mp-seed2"
    assert output_for_seed("runs/a", 1, 2).replace("\\", "/") == "runs/a/seed1"
    assert output_for_seed("runs/a", 1, 1) == "runs/a"


def test_tiny_run_writes_one_checkpoint_per_seed_and_records_the_command(tmp_path, capsys):
    out = str(tmp_path / "tiny-seed{seed}")
    assert main(["train", *TINY, "--seed", "0", "--seed", "1", "--out", out]) == 0
    for seed in (0, 1):
        meta = json.loads((tmp_path / f"tiny-seed{seed}" / META_FILE).read_text())
        assert meta["seed"] == seed and meta["steps"] == 2
        assert "--seed 0 --seed 1" in meta["command"] and "train" in meta["command"]
        assert meta["training"]["config"]["mat_dim"] == 4
    assert "val bpb" in capsys.readouterr().out
    # The same command again finds both seeds finished and trains nothing.
    assert main(["train", *TINY, "--seed", "0,1", "--out", out]) == 0
    assert capsys.readouterr().out.count("already trained") == 2
