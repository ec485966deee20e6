"""The Q5 section of a report: a matrix-CODI study run (L0 and L6, unablated) gets its
prose, tables and latent figures; a run without latent thoughts gets no Q5 section, no latent
figures and no notes about them."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.questions.latents import NO_LATENTS
from ablate.questions.words import number, pair
from ablate.report import ReportResult, RunAnalysis, analyze_run, write_report
from ablate.store import RunStore
from tests.stats.conftest import make_codi_records

Q5_HEADING = "## Q5: matrix-CODI latent thoughts"


def write_codi_run(run_dir: Path, *, n_seeds: int = 2, n_items: int = 24,
                   latent_counts: tuple[int, ...] = (0, 6)) -> Path:
    """A study-like run directory: one job per (train seed, number of latents)."""
    records = make_codi_records(n_seeds=n_seeds, n_items=n_items, latent_counts=latent_counts)
    config = {"version": 1, "name": run_dir.name,
              "checkpoint": {"path": "ckpt", "kind": "native", "label": "codi", "train_seed": 0},
              "task": {"name": "gsm8k", "split": "test", "limit": n_items},
              "n_latents": list(latent_counts), "ks": [], "targets": ["all"],
              "random_draws": 0, "eval_seeds": [0],
              "stats": {"level": 0.95, "n_boot": 100, "seed": 5, "tost_margin": 0.02}}
    job_ids = sorted(records["job_id"].unique())
    with RunStore.open(run_dir, config=config, config_hash=f"hash-{run_dir.name}",
                       job_ids=job_ids) as store:
        for job in job_ids:
            store.write(job, records[records["job_id"] == job].reset_index(drop=True))
    return run_dir


@pytest.fixture(scope="module")
def codi_run(tmp_path_factory: pytest.TempPathFactory) -> RunAnalysis:
    return analyze_run(write_codi_run(tmp_path_factory.mktemp("runs") / "codi"))


@pytest.fixture(scope="module")
def codi_report(codi_run: RunAnalysis, tmp_path_factory: pytest.TempPathFactory
                ) -> ReportResult:
    return write_report(codi_run, tmp_path_factory.mktemp("reports") / "codi")


def _markdown(report: ReportResult) -> str:
    return (report.out_dir / "report.md").read_text(encoding="utf-8")


def test_codi_run_gets_the_q5_section_with_its_numbers(codi_run: RunAnalysis,
                                                       codi_report: ReportResult) -> None:
    markdown = _markdown(codi_report)
    analysis = codi_run.analysis
    assert Q5_HEADING in markdown and NO_LATENTS not in markdown
    entry = analysis["q5"][0]
    slope = next(c for c in entry["claims"] if c["aspect"] == "profile")
    assert f"95% interval {pair(slope['e3'])} erank per latent step" in markdown
    assert f"Z_1 {number(entry['mean_profile'][0])}" in markdown
    accuracy = next(e for e in analysis["q5_latents"] if e["outcome"] == "correct")
    assert f"95% interval {pair(accuracy['claims'][0]['e3'])} pp" in markdown
    assert "### Number of latents, codi, gsm8k generative T=1: accuracy" in markdown
    assert f"({entry['depth']['n_excluded_unknown_depth']} excluded for unknown depth)" \
        in markdown
    # Q5 comes after Q4, and its primary claims are in the summary.
    assert markdown.index("## Q4") < markdown.index(Q5_HEADING)
    summary = markdown[markdown.index("## Summary"):markdown.index("## What was run")]
    assert summary.count("- Q5, ") == 3  # slope, depth, L6 minus L0 accuracy


def test_what_was_run_describes_the_study_and_tables_hold_q5(codi_report: ReportResult) -> None:
    # A study config has no tasks/interventions lists: the facts come from its own keys.
    markdown = _markdown(codi_report)
    ran = markdown[markdown.index("## What was run"):markdown.index("## How to read")]
    assert "Matrix-CODI study of `codi`" in ran and "Numbers of latents: [0, 6]" in ran
    assert "Tasks: unknown" not in ran and "| codi | 0 | ckpt |" in ran
    for table in ("q5.csv", "q5_latents.csv"):
        assert (codi_report.out_dir / "tables" / table).stat().st_size > 0


def test_codi_run_draws_the_latent_figures(codi_report: ReportResult) -> None:
    # The latent figures follow Q4's and precede the power figure (numbered in order of
    # appearance: 9 and 10 here, since Q5's section comes after Q4's figures 7 and 8).
    figures = codi_report.out_dir / "figures"
    for stem in ("fig09-latent-erank-profile", "fig10-latent-erank-by-depth"):
        (png,) = figures.glob(f"{stem}-*.png")
        assert png.with_suffix(".svg").is_file()
        assert f"](figures/{png.name})" in _markdown(codi_report)
    missing = {m.name for m in codi_report.missing}
    assert not {"latent-erank-profile", "latent-erank-by-depth"} & missing


def test_a_run_without_a_codi_model_has_no_q5_section(report: ReportResult) -> None:
    # Q5 and Figures 11-12 are about matrix-CODI latent thoughts: a run without a CODI model
    # gets neither the section nor notes that they are missing.
    markdown = _markdown(report)
    assert Q5_HEADING not in markdown and NO_LATENTS not in markdown
    assert not {"latent-erank-profile", "latent-erank-by-depth"} & {
        m.name for m in report.missing}
    assert "Figure 11" not in markdown and "Figure 12" not in markdown
    assert not list((report.out_dir / "figures").glob("fig*-latent-*"))


def test_a_codi_run_without_l0_says_the_number_of_latents_is_not_tested(
        tmp_path: Path) -> None:
    run = analyze_run(write_codi_run(tmp_path / "run", n_seeds=1, n_items=12,
                                     latent_counts=(6,)))
    assert run.analysis["q5_latents"] == [] and len(run.analysis["q5"]) == 1
    report = write_report(run, tmp_path / "report")
    markdown = _markdown(report)
    assert "no n_latents = 0 (no-thought) baseline" in markdown
    assert "one seed: description only, no inference across seeds" in markdown
