"""``ablate inspect`` / ``ablate convert`` through ``ablate.cli.main``: JSON keys, tables,
verified conversion, and bad input as one ``error:`` line with exit code 2."""

from __future__ import annotations

import json

import pytest

from ablate.checkpoint import INSPECT_KEYS
from ablate.cli import main
from tests.checkpoint.research_files import BAD_INPUTS, expected_name, tiny_research


def test_inspect_json_has_documented_keys(tmp_path, capsys):
    path = tiny_research(tmp_path / "run")
    assert main(["inspect", str(path), "--json", "-T", "2", "--tokens", "6"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert tuple(report) == INSPECT_KEYS
    assert report["format"] == "research" and report["config"]["n_heads"] == 2
    assert len(report["erank_per_iter"]) == 3 and report["batch"]["shape"] == [2, 6]


def test_inspect_flags_reach_the_loader_and_are_named_as_sources(tmp_path, capsys):
    path = tiny_research(tmp_path / "run", sidecar={})
    args = ["inspect", str(path), "--json", "--attention", "matrix3d", "--n-heads", "4"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["config"]["attention"], report["config"]["n_heads"]) == ("matrix3d", 4)
    assert report["settings"]["n_heads"] == {"value": 4, "source": "--n-heads", "how": "stated"}


def test_inspect_prints_tables_and_notes(reference, capsys):
    root = reference / "round1_frobenius_collapse__small_init"
    assert main(["inspect", str(root), "-T", "1"]) == 0
    out = capsys.readouterr().out
    for text in ("Checkpoint", "research", "round1_frobenius_collapse", "10,478", "Config",
                 "note:", "Effective rank per iteration", "M(1)", "where each value came from",
                 "config.json"):
        assert text in out
    assert "M(2)" not in out


def test_convert_then_inspect_the_native_copy(tmp_path, capsys):
    source = tiny_research(tmp_path / "run", attention="matrix3d", sidecar={})
    target = tmp_path / "native"
    args = ["convert", str(source), str(target), "--attention", "matrix3d", "--n-heads", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "logits of the copy identical" in out and "n_heads = 2 (from --n-heads)" in out
    assert main(["inspect", str(target), "--json", "-T", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "native" and report["config"]["attention"] == "matrix3d"
    assert report["metadata"]["command"].startswith(f"ablate convert {source} {target}")
    assert main(["convert", str(source), str(target), "--n-heads", "2", "--attention",
                 "matrix3d"]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_error_line(tmp_path, capsys, case):
    path, overrides = BAD_INPUTS[case](tmp_path)
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in overrides.items()]
    assert main(["inspect", str(path), *flags]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert expected_name(case, path) in lines[0]
    assert "Traceback" not in captured.err + captured.out



def test_unknown_attention_value_is_a_usage_error(tmp_path, capsys):
    assert main(["inspect", str(tiny_research(tmp_path)), "--attention", "3d"]) == 2
    assert "frobenius" in capsys.readouterr().err
