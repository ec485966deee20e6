"""Flags generated from the training dataclasses: each field is a flag with the field's
help and default, the flags that scripts and docs use keep working, and --config files
(old key names included) combine with flags."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import typer

from ablate.checkpoint import META_FILE
from ablate.cli import build_app, main
from ablate.cli.options import option_fields
from ablate.codi.train_config import CodiTrainConfig
from ablate.config import field_flags
from ablate.train import TrainConfig

REPO = Path(__file__).resolve().parents[2]
# Options of the commands themselves, not of the configs they build.
OWN = {"train": {"variant", "seed", "config_file", "threads", "resume", "codi"},
       "codi train": {"config_file", "out", "threads"}}


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def command(path: str):
    words = path.split()
    click_command = typer.main.get_command(build_app(words[0]))
    for word in words:
        click_command = click_command.commands[word]
    return click_command


@pytest.mark.parametrize("path, cls, skip", [("train", TrainConfig, ("seed",)),
                                             ("codi train", CodiTrainConfig, ())])
def test_every_config_field_is_a_flag_with_the_fields_help_and_default(path, cls, skip):
    params = {param.name: param for param in command(path).params}
    specs = option_fields(cls, skip)
    assert set(params) == {spec.name for spec in specs} | OWN[path]
    for spec in specs:
        param = params[spec.name]
        assert tuple(param.opts) == field_flags(spec)
        assert param.help == spec.metadata["help"]
        expected = None if isinstance(spec.default, dict) or spec.type.startswith("dict") \
            else spec.default
        assert param.default == expected, spec.name


def test_the_same_field_has_the_same_flag_in_both_trainers():
    thinker = {spec.name: field_flags(spec) for spec in option_fields(TrainConfig)}
    codi = {spec.name: field_flags(spec) for spec in option_fields(CodiTrainConfig)}
    shared = set(thinker) & set(codi)
    assert {"steps", "warmup", "train_items", "val_items", "n_layers", "lr", "seed"} <= shared
    assert all(thinker[name] == codi[name] for name in shared)


def test_the_flags_of_make_sh_and_the_readmes_are_accepted():
    opts = {opt for param in command("train").params
            for opt in (*param.opts, *param.secondary_opts)}
    used = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", (REPO / "checkpoints" / "make.sh")
                          .read_text()))
    for readme in (REPO / "README.md", REPO / "checkpoints" / "README.md"):
        for line in readme.read_text().splitlines():
            if "ablate train" in line and "--codi" not in line:
                used |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", line))
    assert {"--mat-dim", "--layers", "--heads", "--iterations", "--warmup", "--val-items",
            "--no-resume", "--seed", "--threads"} <= used
    assert used <= opts, sorted(used - opts)
    codi_opts = {opt for param in command("codi train").params for opt in param.opts}
    recorded = json.loads((REPO / "checkpoints" / "codi-synthetic" / META_FILE).read_text())
    assert set(re.findall(r"--[a-z][a-z-]*", recorded["command"])) <= codi_opts


def test_a_codi_config_file_with_old_keys_trains_with_a_notice_and_flags_win(tmp_path, capsys):
    config = tmp_path / "codi.toml"
    config.write_text("max_steps = 5\neval_items = 2\nmat_dim = 4\nn_latents = 1\n"
                      "batch_size = 2\n[task_options]\nn_items = 20\n")
    out = tmp_path / "codi"
    assert main(["codi", "train", "--config", str(config), "--steps", "1",
                 "--task-option", "max_depth=2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{config}: 'max_steps' is now called 'steps'; rename it there" in err
    stored = json.loads((out / META_FILE).read_text())["train_config"]
    assert stored["steps"] == 1 and stored["val_items"] == 2 and stored["mat_dim"] == 4
    assert stored["task_options"] == {"n_items": 20, "max_depth": 2}


def test_bad_config_files_are_one_line_errors(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("mat_dimm = 4\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{config}: unknown key 'mat_dimm'. Did you mean 'mat_dim'?" in err
    assert "\n" not in err
    assert main(["codi", "train", "--config", str(tmp_path / "none.toml"), "--out", "x"]) == 2
    assert "none.toml not found" in capsys.readouterr().err


def test_a_train_config_file_sets_the_run_and_flags_override_it(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('mat_dim = 4\nn_layers = 1\nn_heads = 2\nn_iterations = 2\nmax_len = 32\n'
                      'seq_len = 16\nsteps = 2\nwarmup = 1\nbatch_size = 2\ntrain_items = 20\n'
                      'val_items = 3\ndata = "synthetic:n_items=30,max_depth=1"\n'
                      'device = "cpu"\nseed = 1\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--steps", "1", "--warmup", "0",
                 "--variant", "round1_frobenius_collapse", "--threads", "1",
                 "--out", str(out)]) == 0
    stored = json.loads((out / META_FILE).read_text())["training"]["config"]
    assert stored["steps"] == 1 and stored["mat_dim"] == 4 and stored["seed"] == 1
    assert stored["head"] == "collapse" and stored["betas"] == [0.9, 0.98]
