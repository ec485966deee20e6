"""write_report: the files it writes, their determinism, a self-contained HTML page, and
prose whose numbers and verdict words come from the analysis. The incomplete / one-seed
messages are checked end to end in tests/cli/test_report_cmd.py."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from ablate.errors import AblateError
from ablate.plots import figure_style
from ablate.questions import tables_from_analysis
from ablate.questions.words import E1_WORDS, E3_WORDS, number, pair
from ablate.report import analysis_json, write_report
from ablate.report.assemble import evidence_of
from ablate.report.figures import PlannedFigure, plan_figures


def read(report, name: str) -> str:
    return (report.out_dir / name).read_text(encoding="utf-8")


def test_report_writes_markdown_html_json_every_table_and_every_figure(report, run):
    out = report.out_dir
    for name in ("report.md", "report.html", "analysis.json"):
        assert (out / name).is_file(), name
    tables = {name for name, frame in tables_from_analysis(run.analysis).items()
              if not frame.empty}
    assert {p.stem for p in (out / "tables").glob("*.csv")} == tables
    # Every figure of the spec (1-10) is drawn for this run, each as PNG and SVG.
    pngs = sorted((out / "figures").glob("*.png"))
    assert sorted(int(p.name[3:5]) for p in pngs) == list(range(1, 11))
    assert all(p.with_suffix(".svg").is_file() for p in pngs)
    # Figures 11 and 12 (matrix-CODI latent thoughts) do not apply to a run without a
    # CODI model: neither drawn nor listed as missing, and no Q5 section.
    assert report.missing == ()
    assert "Q5" not in read(report, "report.md")
    assert set(report.files) == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_a_second_report_of_the_same_analysis_is_byte_identical(report, run, validation_csv,
                                                                 tmp_path):
    again = write_report(run, tmp_path / "again", validation=validation_csv)
    assert again.files == report.files
    for name in report.files:
        assert (report.out_dir / name).read_bytes() == (again.out_dir / name).read_bytes(), name


def test_analysis_json_and_csv_hold_the_analysis(report, run):
    assert read(report, "analysis.json") == analysis_json(run.analysis)
    assert json.loads(read(report, "analysis.json")) == run.analysis
    q2 = pd.read_csv(report.out_dir / "tables" / "q2.csv")
    expected = tables_from_analysis(run.analysis)["q2"]
    assert q2.shape == expected.shape
    assert q2["estimate"].tolist() == pytest.approx(expected["estimate"].tolist())


def test_html_is_self_contained_and_embeds_every_figure(report):
    html = read(report, "report.html")
    # No resource is fetched from anywhere: no external src/href, no scripts, no stylesheets.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html and "<link" not in html and "@import" not in html
    embedded = [base64.b64decode(data) for data in
                re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]
    pngs = sorted((report.out_dir / "figures").glob("*.png"))
    assert len(embedded) == len(pngs)
    assert sorted(embedded) == sorted(p.read_bytes() for p in pngs)


def test_markdown_links_every_figure_file(report):
    markdown = read(report, "report.md")
    for png in (report.out_dir / "figures").glob("*.png"):
        assert f"](figures/{png.name})" in markdown
        assert f"](figures/{png.stem}.svg)" in markdown


def test_prose_prints_the_analysis_numbers_with_both_claims_in_words(report, run):
    markdown = read(report, "report.md")
    slope = run.analysis["q1"][0]["claims"][0]
    # The Q1 slope is printed with both intervals, each named by the claim it supports.
    assert f"E1, {E1_WORDS}: 95% interval {pair(slope['e1'])}" in markdown
    assert f"E3, {E3_WORDS}: 95% interval {pair(slope['e3'])}" in markdown
    assert f"(estimate {number(slope['estimate'], signed=True)})" in markdown
    for entry in run.analysis["q2"]:
        for claim in entry["claims"]:
            assert pair(claim["e3"]) in markdown


def test_verdict_words_follow_the_tests_that_license_them(report, run):
    markdown = read(report, "report.md")
    q2 = [c for e in run.analysis["q2"] for c in e["claims"]]
    # "No different from random" only where TOST shows equivalence.
    assert markdown.count("**No different from random within") == sum(
        c.get("equivalent_e3") is True for c in q2)
    # "Monotone across seeds" only where the intersection-union test says so (E3).
    assert markdown.count("**Monotone across seeds (E3)**") == sum(
        e["monotone"]["e3"] is True for e in run.analysis["q1"])
    flips = [e["direction_flip"]["flips"] for e in run.analysis["q3_heads"]]
    assert ("**The direction flips with the head**" in markdown) == any(flips)


def test_report_states_what_was_run(report, run):
    markdown = read(report, "report.md")
    manifest = run.manifest
    assert manifest["config_hash"] in markdown
    if manifest.get("git"):
        assert manifest["git"]["commit"] in markdown
    assert f"ablate {manifest['ablate_version']}" in markdown
    for checkpoint in manifest["config"]["checkpoints"]:
        assert checkpoint["path"] in markdown
    # Where each fact the weights do not give came from; nothing was assumed.
    assert ("6 checkpoints (collapse, multiprobe): n_heads = 8 (from the n_heads override), "
            "attention = frobenius (from results.json (config))") in markdown
    assert "Assumed, not stated" not in markdown
    assert "generator seed 7" in markdown and "100 bootstrap replicates" in markdown
    assert "5 pp of accuracy" in markdown  # tost_margin 0.05 in the config is 5 pp
    assert "Jobs: 6 of 6 finished" in markdown
    assert "minimum detectable effect" in markdown.lower() and "5 or more" in markdown


def test_a_non_empty_directory_that_is_not_a_report_is_refused(run, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(AblateError, match="not empty and holds no earlier report"):
        write_report(run, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_bad_validation_table_is_a_user_error(run, tmp_path):
    bad = tmp_path / "validation.csv"
    bad.write_text("method,coverage\nE3,0.95\n")
    with pytest.raises(AblateError, match="lacks column"):
        write_report(run, tmp_path / "out", validation=bad)
    with pytest.raises(AblateError, match="not found"):
        write_report(run, tmp_path / "out", validation=Path(tmp_path / "missing.csv"))


# A notes column right of the panel leaves titles no slack.
FOREST_FIGURES = ("ablation-minus-control", "adjacent-contrasts", "slopes-by-head")


def test_figure_titles_stay_inside_the_figure(run):
    # Invariant: at the saved resolution, a left-aligned panel title ends inside the
    # figure (with a margin) and does not run past its panel into the notes column; Figure
    # 6's one-line title used to be clipped at the right edge.
    plan = plan_figures(evidence_of(run), None)
    specs = [item for items in plan.values() for item in items
             if isinstance(item, PlannedFigure) and item.spec.name in FOREST_FIGURES]
    assert {spec.spec.name for spec in specs} == set(FOREST_FIGURES)
    margin = 0.1  # inches
    for spec in specs:
        fig, _ = spec.spec.draw()
        with figure_style():
            fig.savefig(io.BytesIO(), format="png")  # lays the figure out at savefig dpi
            renderer = fig.canvas.get_renderer()
            for ax in fig.axes:
                title = ax._left_title  # matplotlib's artist for set_title(loc="left")
                if not title.get_text():
                    continue
                box, panel = title.get_window_extent(renderer), ax.get_window_extent(renderer)
                assert box.x1 <= fig.bbox.x1 - margin * fig.dpi, (spec.stem, title.get_text())
                assert box.y1 <= fig.bbox.y1, (spec.stem, title.get_text())
                assert box.x1 <= panel.x1 + margin * fig.dpi, (spec.stem, title.get_text())
