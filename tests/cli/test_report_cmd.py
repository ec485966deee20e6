"""``ablate stats`` and ``ablate report``: identical output for the same run directory,
JSON that parses, the default report location, the incomplete-run and one-seed messages,
and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ablate.cli import main
from ablate.report import analysis_json, analyze_run
from tests.report.conftest import job_id, write_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two heads x two seeds, enough for every family."""
    return write_run(tmp_path_factory.mktemp("runs") / "cli", seeds=(0, 1), n_items=10,
                     ks=(1, 2), n_draws=2)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_stats_prints_identical_tables_on_a_second_run(run_dir, capsys):
    assert main(["stats", str(run_dir)]) == 0
    first = capsys.readouterr().out
    assert main(["stats", str(run_dir)]) == 0
    assert capsys.readouterr().out == first
    assert "Q1: change per halving of k" in first and "Q2: SVD minus random" in first
    # Settings come from the run's [stats] table, shown with their source.
    assert "n_boot 100, seed 7, equivalence margin 5 pp (the run's [stats] table)" in first
    assert f"next: ablate report {run_dir}" in first


def test_stats_json_parses_and_repeats_the_same_bytes(run_dir, capsys):
    assert main(["stats", str(run_dir), "--json"]) == 0
    printed = capsys.readouterr().out
    analysis = json.loads(printed)
    assert analysis["schema"] == "ablate.stats/1" and analysis["q1"] and analysis["q3_heads"]
    assert analysis["settings"]["n_boot"] == 100 and analysis["settings"]["tost_margin"] == 5.0
    # A second analysis of the same run gives the same bytes (what report writes as JSON).
    assert printed == analysis_json(analyze_run(run_dir).analysis)


def test_report_of_an_incomplete_one_seed_run_goes_to_reports_run_name(tmp_path, capsys,
                                                                         monkeypatch):
    run_dir = write_run(tmp_path / "tiny", heads=("multiprobe",), seeds=(0, 1), n_items=8,
                        ks=(1, 2), n_draws=1, skip_jobs=1)
    monkeypatch.chdir(tmp_path)  # no bench/results here: the appendix says how to make it
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out
    report_dir = Path("reports") / "tiny"  # the default: reports/<run name>
    assert f"report: {report_dir / 'report.html'}" in out
    assert "figure 10 not drawn" in out and "incomplete run: 1 of 2 jobs missing" in out
    markdown = (report_dir / "report.md").read_text()
    # Incomplete: what is there is reported, and the missing job is named.
    assert "Incomplete run: 1 of 2 jobs have no records yet" in markdown
    assert f"`{job_id('multiprobe', 1, 3)}`" in markdown
    # One seed left: described, not inferred, and the report says why.
    assert "One training seed for multiprobe" in markdown and "Nothing is inferred" in markdown
    analysis = json.loads((report_dir / "analysis.json").read_text())
    claims = [c for f in ("q1", "q2", "q3", "q4") for e in analysis[f] for c in e["claims"]]
    assert claims and all(c["e3"] == [None, None] for c in claims)
    assert "Verdict: **significant across seeds" not in markdown
    # Without a validation table the appendix says how to make one.
    assert "python bench/stats_validation.py" in markdown
    assert not list((report_dir / "figures").glob("fig10*"))


def test_seed_and_n_boot_options_override_the_config_and_say_so(run_dir, capsys):
    assert main(["stats", str(run_dir), "--seed", "8", "--n-boot", "20"]) == 0
    out = capsys.readouterr().out
    assert "n_boot 20, seed 8" in out and "overridden by --seed and --n-boot" in out


@pytest.mark.parametrize("args, fragment", [
    (["stats", "{missing}"], "is not an ablate run directory"),
    (["stats", "{run}", "--eval-seed", "4"], "--eval-seed 4 is not in"),
    (["report", "{run}", "--validation", "{missing}/v.csv"], "validation table"),
])
def test_bad_input_is_one_line_exit_2(run_dir, tmp_path, capsys, args, fragment):
    filled = [a.format(run=run_dir, missing=tmp_path / "nowhere") for a in args]
    assert main(filled) == 2
    assert fragment in one_line_error(capsys)
