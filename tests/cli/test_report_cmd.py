"""``ablate stats`` and ``ablate report``: identical output for the same run directory,
JSON that parses, the default report location, the incomplete-run and one-seed messages,
and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ablate.cli import main
from ablate.report import (
    analysis_json,
    analyze_run,
    check_report_dir,
    default_report_dir,
    report_source,
)
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


def test_an_incomplete_run_says_partial_and_exits_3_unless_partial_is_given(
        tmp_path, capsys, monkeypatch):
    # What `ablate run ... && ablate report ...` relies on: an interrupted run exits 130,
    # and an incomplete run is never analysed silently either.
    run_dir = write_run(tmp_path / "tiny", heads=("multiprobe",), seeds=(0, 1), n_items=8,
                        ks=(1, 2), n_draws=1, skip_jobs=1)
    monkeypatch.chdir(tmp_path)  # outside the repository: no bench/results here
    assert main(["stats", str(run_dir)]) == 3
    captured = capsys.readouterr()
    line = captured.err.strip().splitlines()[-1]
    assert line.startswith("partial: 1 of 2 jobs finished") and "--partial" in line
    assert "Q1:" in captured.out  # the tables are printed all the same
    assert main(["stats", str(run_dir), "--partial"]) == 0
    assert capsys.readouterr().err.strip().endswith("(--partial)")
    assert main(["report", str(run_dir)]) == 3
    out = capsys.readouterr().out
    report_dir = Path("reports") / "tiny"  # the default: reports/<run directory name>
    assert f"report: {report_dir / 'report.html'}" in out
    markdown = (report_dir / "report.md").read_text()
    lines = markdown.splitlines()
    assert lines[0] == "# Rank-ablation report: tiny (partial: 1 of 2 jobs)"
    assert lines[2].startswith("> **Warning:** **partial: 1 of 2 jobs.**")  # the banner
    assert "<title>Rank-ablation report: tiny (partial: 1 of 2 jobs)</title>" in (
        report_dir / "report.html").read_text()
    assert f"`{job_id('multiprobe', 1, 3)}`" in markdown  # the missing job is named
    # One seed left: described, not inferred, and the report says why.
    assert "One training seed for multiprobe" in markdown and "Nothing is inferred" in markdown
    analysis = json.loads((report_dir / "analysis.json").read_text())
    claims = [c for f in ("q1", "q2", "q3", "q4") for e in analysis[f] for c in e["claims"]]
    assert claims and all(c["e3"] == [None, None] for c in claims)
    assert "Verdict: **significant across seeds" not in markdown
    # Run from outside the repository, the report still has the validation appendix (the
    # checkout's bench/results table, eval-seed rows included).
    assert "figure 10 not drawn" not in out and list((report_dir / "figures").glob("fig10*"))
    assert "bench/results/stats_validation.csv" in markdown and "eval_seeds" in markdown
    # Without a CODI model: no Q5 section and no notes about Figures 11-12.
    assert "Q5" not in markdown and "Figure 11" not in markdown and "figure 11" not in out


def test_reports_of_other_runs_or_options_never_overwrite_each_other(tmp_path, capsys,
                                                                      monkeypatch):
    # Two run directories of one experiment name (e.g. a copy made with --out RUN_B); the
    # first has two eval seeds, which need no flag to be reported.
    run_a = write_run(tmp_path / "runs" / "quickstart", heads=("multiprobe",), seeds=(0, 1),
                      n_items=8, ks=(1, 2), n_draws=1, n_boot=20, eval_seeds=(0, 1))
    run_b = write_run(tmp_path / "other" / "RUN_B", heads=("multiprobe",), seeds=(0, 1),
                      n_items=8, ks=(1, 2), n_draws=1, n_boot=20)
    monkeypatch.chdir(tmp_path)
    # Default directories follow the run directory and the options given.
    assert default_report_dir(analyze_run(run_a)) == Path("reports/quickstart")
    assert default_report_dir(analyze_run(run_b)) == Path("reports/RUN_B")
    assert default_report_dir(analyze_run(run_a, seed=3, n_boot=50)) == \
        Path("reports/quickstart-seed3-nboot50")
    assert default_report_dir(analyze_run(run_a, eval_seed=1)) == \
        Path("reports/quickstart-eval-seed1")
    assert main(["report", str(run_a)]) == 0
    assert "report: reports/quickstart/report.html" in capsys.readouterr().out
    markdown = (tmp_path / "reports/quickstart/report.md").read_text()
    assert "Eval seeds [0, 1] are analysed together" in markdown
    source = json.loads((tmp_path / "reports/quickstart/report_source.json").read_text())
    assert source == {"run_dir": str(run_a.resolve()), "config_hash": "hash-quickstart",
                      "options": {}}
    # Another run, or other options, into that directory: refused in one line, untouched.
    before = (tmp_path / "reports/quickstart/report.md").read_bytes()
    assert main(["report", str(run_b), "--out", "reports/quickstart"]) == 2
    assert f"holds the report of {run_a.resolve()}" in one_line_error(capsys)
    assert main(["report", str(run_a), "--out", "reports/quickstart", "--n-boot", "30"]) == 2
    assert "--force to replace it" in one_line_error(capsys)
    assert (tmp_path / "reports/quickstart/report.md").read_bytes() == before
    # --force lets it replace a report (never a directory that holds no report).
    check_report_dir(Path("reports/quickstart"), report_source(analyze_run(run_b)), force=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("x")
    assert main(["report", str(run_a), "--out", "notes", "--force"]) == 2
    assert "holds no earlier report" in one_line_error(capsys)


def test_changed_stats_table_of_the_experiment_file_is_adopted_with_a_notice(
        tmp_path, capsys, monkeypatch):
    run_dir = write_run(tmp_path / "synthetic", heads=("multiprobe",), seeds=(0, 1),
                        n_items=8, ks=(1, 2), n_draws=1, n_boot=100)
    monkeypatch.chdir(tmp_path)  # the manifest names experiments/synthetic.toml
    (tmp_path / "experiments").mkdir()
    experiment = tmp_path / "experiments" / "synthetic.toml"
    experiment.write_text('version = 1\nname = "synthetic"\n[stats]\ntost_margin = 0.05\n'
                          "level = 0.95\nn_boot = 150\nseed = 7\nsmoke = true\n")
    assert main(["stats", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "n_boot 150, seed 7" in captured.out  # not the 100 the run recorded
    notice = captured.err.strip().splitlines()[0]
    assert notice == ("note: using [stats] of experiments/synthetic.toml, changed since the run "
                      "(n_boot 100 -> 150); records are unchanged")
    # The run's table again: no notice.
    experiment.write_text('version = 1\nname = "synthetic"\n[stats]\ntost_margin = 0.05\n'
                          "n_boot = 100\nseed = 7\nsmoke = true\n")
    assert main(["stats", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "n_boot 100, seed 7" in captured.out and "note: using" not in captured.err


def test_without_any_validation_table_the_appendix_says_how_to_make_one(tmp_path, capsys,
                                                                         monkeypatch):
    import ablate.report.writer as writer

    run_dir = write_run(tmp_path / "tiny", heads=("multiprobe",), seeds=(0, 1), n_items=8,
                        ks=(1, 2), n_draws=1, n_boot=20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(writer, "CHECKOUT", tmp_path)  # as if installed without the checkout
    assert main(["report", str(run_dir)]) == 0
    assert "figure 10 not drawn" in capsys.readouterr().out
    markdown = (tmp_path / "reports" / "tiny" / "report.md").read_text()
    assert "python bench/stats_validation.py" in markdown
    assert not list((tmp_path / "reports" / "tiny" / "figures").glob("fig10*"))


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


def test_a_run_with_two_eval_seeds_is_analysed_without_extra_flags(tmp_path, capsys,
                                                                    monkeypatch):
    run_dir = write_run(tmp_path / "evals", heads=("multiprobe",), seeds=(0, 1), n_items=8,
                        ks=(1, 2), n_draws=1, n_boot=20, eval_seeds=(0, 1))
    monkeypatch.chdir(tmp_path)
    assert main(["stats", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "eval seeds [0, 1]: each problem averaged over them within its training seed" in out
    assert "4 of 4 jobs" in out
    # Averaged: each (seed, condition, problem) once, outcomes in {0, 0.5, 1}.
    run = analyze_run(run_dir)
    assert run.eval_seeds == (0, 1) and "eval_seed" not in run.records.columns
    assert set(run.records["correct"].unique()) <= {0.0, 0.5, 1.0}
    # One eval seed on request (its report goes to reports/evals-eval-seed1: see
    # test_reports_of_other_runs_or_options_never_overwrite_each_other, which also writes
    # the report of a two-eval-seed run without flags).
    assert main(["stats", str(run_dir), "--eval-seed", "1"]) == 0
    assert "eval seeds [0, 1]" not in capsys.readouterr().out
