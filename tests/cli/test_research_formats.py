"""Research checkpoints through ``ablate convert``: every variant in every save format
either reproduces the research logits or is refused (exit 2) in one line that names the
missing fact and its flag; and each trap of a wrong-but-exit-0 load is closed.

The research logits are shared/reference's; "right" means within 1e-4 of them (float32
files) or within the rounding of the file's dtype (bf16, fp16), while a wrong head count
or attention type is off by 0.7 or more (relative to max |logit|) on every case.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ablate.checkpoint import load_checkpoint
from ablate.cli import main
from ablate.model import MatrixThinker, MatrixThinkerConfig
from tests.checkpoint.research_files import REFERENCE_CASES, write_research
from tests.checkpoint.save_formats import (
    SAVE_FORMATS,
    load_case,
    max_rel,
    truth_model,
    write_format,
)

# max|a - b| / max|b| allowed against the research logits, by the file's dtype.
DTYPE_TOLERANCE = {torch.bfloat16: 0.05, torch.float16: 0.02}


def run(capsys, *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def logits(path: Path, ids: torch.Tensor, T: int = 8) -> torch.Tensor:
    with torch.no_grad():
        return load_checkpoint(path).model(ids, T).logits


@pytest.mark.parametrize("fmt", sorted(SAVE_FORMATS))
@pytest.mark.parametrize("case_name", REFERENCE_CASES)
def test_every_variant_in_every_save_format_is_right_or_refused(tmp_path, capsys, case_name,
                                                                fmt):
    case, save = load_case(case_name), SAVE_FORMATS[fmt]
    path, flags = write_format(tmp_path / "run", case, save)
    code, out, err = run(capsys, "convert", path, tmp_path / "native", *flags)
    if not save.states_facts:
        line = one_error_line(err)
        assert code == 2 and not (tmp_path / "native").exists()
        assert "n_heads and attention are not in the weights" in line
        assert "--n-heads H and --attention frobenius|matrix3d" in line
        return
    assert code == 0, err
    got = logits(tmp_path / "native", case.ids)
    if save.dtype is None:
        assert max_rel(got, case.expected) <= 1e-4
    else:  # compared, not just accepted: the research function of the rounded weights
        truth = truth_model(case, path, save)
        with torch.no_grad():
            assert max_rel(got, truth(case.ids, 8).logits) <= 1e-6
        spread = float((got - case.expected).abs().max() / case.expected.abs().max())
        assert spread <= DTYPE_TOLERANCE[save.dtype]


@pytest.mark.parametrize("drop", ["n_heads", "attention"])
@pytest.mark.parametrize("fmt", ["reference", "results_json", "script_py", "mid_training",
                                 "flags"])
def test_a_fact_no_source_states_is_refused_naming_it_and_its_flag(tmp_path, capsys, fmt, drop):
    case = load_case("attn3d_multiprobe__small_init")
    path, flags = write_format(tmp_path / "run", case, SAVE_FORMATS[fmt], drop=(drop,))
    code, _, err = run(capsys, "convert", path, tmp_path / "native", *flags)
    line = one_error_line(err)
    flag = {"n_heads": "--n-heads H", "attention": "--attention frobenius|matrix3d"}[drop]
    assert code == 2 and f"{drop} is not in the weights" in line and flag in line


def test_d8_has_no_research_default_to_assume(tmp_path, capsys):
    case = load_case("round2_frobenius_multiprobe__small_init")
    path, _ = write_format(tmp_path / "run", case, SAVE_FORMATS["bare"])
    code, _, err = run(capsys, "inspect", path, "--assume-research-defaults")
    line = one_error_line(err)
    assert code == 2 and "no research script has defaults for d=8" in line
    assert "--n-heads H and --attention" in line


# -- the traps of the issue ---------------------------------------------------------------


def research_model(seed: int, **config) -> MatrixThinker:
    torch.manual_seed(seed)
    base = dict(mat_dim=16, n_layers=2, n_heads=2, n_probes=16, vocab_size=256, max_len=64)
    return MatrixThinker(MatrixThinkerConfig(**{**base, **config})).eval()


def test_bare_round2_file_at_d16_with_2_heads_is_refused_not_guessed(tmp_path, capsys):
    # Was: exit 0, "logits identical", 4 heads assumed, relative logit error 0.72.
    model = research_model(0)
    path = write_research(tmp_path / "run", model.state_dict())
    code, out, err = run(capsys, "convert", path, tmp_path / "native")
    line = one_error_line(err)
    assert code == 2 and out == "" and not (tmp_path / "native").exists()
    assert line == (f"error: {path}: n_heads and attention are not in the weights and nothing "
                    "states them; pass --n-heads H and --attention frobenius|matrix3d, or "
                    "--assume-research-defaults to assume run_byte_matrix.py's 4 heads, "
                    "frobenius attention")
    code, out, _ = run(capsys, "convert", path, tmp_path / "native", "--n-heads", "2",
                       "--attention", "frobenius")
    assert code == 0 and "n_heads = 2 (from --n-heads)" in out
    ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(logits(tmp_path / "native", ids), model(ids, 8).logits)


def test_convert_never_calls_a_guessed_config_identical(tmp_path, capsys):
    path = write_research(tmp_path / "run", research_model(0).state_dict())
    code, out, _ = run(capsys, "convert", path, tmp_path / "native", "--assume-research-defaults")
    assert code == 0 and "identical" not in out
    assert "n_heads = 4 (ASSUMED: research default of run_byte_matrix.py at d=16)" in out
    assert "warning: n_heads and attention were assumed, not stated" in out
    meta = json.loads((tmp_path / "native" / "ablate_meta.json").read_text())
    assert meta["source_settings"]["n_heads"]["how"] == "assumed"
    # The native copy states n_heads in its config.json, but stays marked assumed.
    assert load_checkpoint(tmp_path / "native").info.assumed == ["n_heads", "attention"]
    code, out, _ = run(capsys, "inspect", tmp_path / "native", "--json", "-T", "0")
    assert code == 0 and json.loads(out)["settings"]["attention"]["how"] == "assumed"


def test_mid_training_file_uses_its_embedded_config(tmp_path, capsys):
    # Was: the embedded config (n_heads = 2) ignored, 4 heads assumed.
    model = research_model(1)
    optimizer = torch.optim.AdamW(model.parameters())
    saved = {"step": 700, "model_state_dict": model.state_dict(),
             "optimizer_state_dict": optimizer.state_dict(),
             "scheduler_state_dict": {"last_epoch": 700}, "config": {"n_heads": 2, "lr": 3e-4}}
    path = write_research(tmp_path / "run", saved, name="step_700.pt")
    code, _, err = run(capsys, "inspect", path)
    line = one_error_line(err)
    assert code == 2 and "attention is not in the weights" in line and "n_heads" not in line
    code, out, _ = run(capsys, "inspect", path, "--attention", "frobenius", "--json")
    report = json.loads(out)
    assert code == 0 and report["config"]["n_heads"] == 2
    assert report["settings"]["n_heads"]["source"] == "'config' in step_700.pt"
    with torch.no_grad():
        ids = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(1))
        loaded = load_checkpoint(path, overrides={"attention": "frobenius"})
        assert torch.equal(loaded.model(ids, 8).logits, model(ids, 8).logits)


def test_bare_3d_file_at_the_3d_script_defaults_is_refused_then_assumed_as_3d(tmp_path, capsys):
    # Was: Frobenius assumed for a d = 16, 12-layer BPE file; logits off by 1.78. The only
    # research script at d = 16 with a BPE vocabulary is run_3d_attention.py.
    model = research_model(2, n_layers=12, n_heads=4, vocab_size=50257, max_len=32,
                           attention="matrix3d")
    path = write_research(tmp_path / "run", model.state_dict())
    code, _, err = run(capsys, "inspect", path)
    line = one_error_line(err)
    assert code == 2 and "--attention frobenius|matrix3d" in line
    assert "run_3d_attention.py's 4 heads, matrix3d attention" in line
    code, out, _ = run(capsys, "inspect", path, "--assume-research-defaults", "--json", "-T", "1")
    report = json.loads(out)
    assert code == 0 and report["config"]["attention"] == "matrix3d"
    assert report["settings"]["attention"] == {
        "value": "matrix3d", "how": "assumed",
        "source": "research default of run_3d_attention.py at d=16"}
    loaded = load_checkpoint(path, overrides={"assume_research_defaults": True},
                             require_tokenizer=False)
    ids = torch.randint(0, 50257, (1, 8), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(loaded.model(ids, 2).logits, model(ids, 2).logits)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--n-heads", "4"], "n_heads is 4 by --n-heads but 8 by results.json (config); drop "
                         "--n-heads, or fix results.json (config) if it is wrong"),
    (["--attention", "matrix3d"], "attention is matrix3d by --attention but frobenius by "
                                  "script.py (defines MatrixFrobeniusAttention); drop "
                                  "--attention, or fix script.py (defines "
                                  "MatrixFrobeniusAttention) if it is wrong"),
])
def test_a_flag_contradicting_the_runs_files_is_refused_naming_both(tmp_path, capsys, flags,
                                                                    expected):
    model = research_model(3, n_heads=8)
    path = write_research(tmp_path / "run", model.state_dict(),
                          results={"experiment": "some_run", "config": {"n_heads": 8}},
                          script="class MatrixFrobeniusAttention(nn.Module):\n    pass\n")
    code, _, err = run(capsys, "convert", path, tmp_path / "native", *flags)
    assert code == 2 and one_error_line(err) == f"error: {path}: {expected}"
    assert not (tmp_path / "native").exists()
    code, out, _ = run(capsys, "convert", path, tmp_path / "native")  # the files agree
    assert code == 0 and "n_heads = 8 (from results.json (config))" in out


@pytest.mark.parametrize("n_heads", ["0", "-2", "3", "32"])
def test_a_bad_n_heads_is_one_short_line(tmp_path, capsys, n_heads):
    # Was: --n-heads 0 gave a ZeroDivisionError traceback; 3 a ~430-character message.
    path = write_research(tmp_path / "run", research_model(4).state_dict(),
                          sidecar={"attention": "frobenius"})
    code, _, err = run(capsys, "inspect", path, "--n-heads", n_heads)
    line = one_error_line(err)
    assert code == 2
    assert line == (f"error: {path}: n_heads={n_heads} from --n-heads is not a divisor of "
                    "d=16; use one of 1, 2, 4, 8, 16")
    assert len(line) - len(str(path)) < 120
