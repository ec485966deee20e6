"""What the report shows is exactly what the numbers support (issue 11): the verdict table
and the headline figure open the report; a bootstrap p at its floor is a bound with its
caveat; identity contrasts are checks, never estimates made of rounding noise; a smoke run
says so; titles keep their acronyms inside sentences."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ablate.questions.words import claim_p, format_p, number, pair, short_verdict
from ablate.report import ReportResult, analyze_run, write_report
from ablate.report.document import anchor
from ablate.report.writer import in_sentence
from tests.report.conftest import write_run

# A number printed in scientific notation with an exponent of -10 or below: rounding noise.
NOISE = re.compile(r"\d(?:\.\d+)?e-(?:1\d|[2-9]\d)")


def read(report: ReportResult, name: str) -> str:
    return (report.out_dir / name).read_text(encoding="utf-8")


def text_of(html: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)


@pytest.fixture(scope="module")
def identity_report(tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """Checkpoints with d = 4 and k = 1, 2, 4: at k = 4 both rank cuts keep the states (the
    records return the unablated outcome), and three random draws make their mean differ
    from it by rounding, as in real runs."""
    run_dir = write_run(tmp_path_factory.mktemp("runs") / "identity", n_draws=3, d=4,
                        identity_k=4)
    return write_report(analyze_run(run_dir), tmp_path_factory.mktemp("reports") / "identity")


def test_identity_contrasts_are_checks_and_never_print_rounding_noise(identity_report):
    markdown = read(identity_report, "report.md")
    html = text_of(read(identity_report, "report.html"))
    assert not NOISE.findall(markdown) and not NOISE.findall(html)
    assert "Identity checks: 10 of 10 passed (Q1, Q2 contrasts where k=4 >= d=4" in markdown
    assert "**identity check passed**. k=4 >= d=4 keeps the states" in markdown
    # The checks are neither in the verdict table nor in a Holm family.
    verdicts = markdown[:markdown.index("## Summary")]
    assert "k = 4" not in verdicts.split("Identity checks")[0]
    for entry in identity_report_analysis(identity_report)["q2"]:
        check = next(c for c in entry["claims"] if c["k"] == 4)
        assert check["verdict"] == "identity_check_passed" and check["p_holm_e3"] is None


def identity_report_analysis(report: ReportResult) -> dict:
    return json.loads(read(report, "analysis.json"))


def test_a_broken_identity_is_a_warning_at_the_top(tmp_path):
    # d = 4, but the records at k = 4 differ from the unablated ones.
    run = analyze_run(write_run(tmp_path / "broken", heads=("multiprobe",), seeds=(0, 1),
                                n_items=12, d=4))
    markdown = read(write_report(run, tmp_path / "report"), "report.md")
    top = markdown[:markdown.index("**Verdicts")]
    assert "identity check(s) failed**: a rank cut with k >= d must keep the states" in top
    assert "**identity check FAILED**. k=4 >= d=4 should keep the states" in markdown


def test_verdict_table_and_headline_figure_open_the_report(report, run):
    markdown = read(report, "report.md")
    first = markdown[:markdown.index("## Summary")]
    table = first[first.index("**Verdicts"):]
    # One row per head and headline claim: Q1 slope, Q2 per k, Q3 slope and heads, Q4.
    heads = ("collapse", "multiprobe")
    rows = [line for line in table.splitlines() if line.startswith("| [Q")]
    assert len(rows) == 2 + 2 * 3 + 2 + 1 + 2
    slope = next(e for e in run.analysis["q1"] if e["config_label"] == "multiprobe"
                 and e["outcome"] == "correct")["claims"][0]
    (q1,) = [row for row in rows if "| multiprobe |" in row and "per halving of k" in row]
    cells = [cell.strip() for cell in q1.strip("|").split("|")]
    assert cells[2:] == [number(slope["estimate"], signed=True), pair(slope["e3"]),
                         short_verdict(slope["verdict"])]
    assert all(any(head in row for head in heads) for row in rows)
    # The headline figure (accuracy against log2 k) comes right after the table, and its
    # section says where it went.
    assert "![Figure 1: Accuracy against log2 k](figures/fig01-accuracy-vs-k" in first
    assert "Figure 1: Accuracy against log2 k is shown at the top of the report" in markdown
    # Each question links to its section, whose anchor exists in the HTML page.
    html = read(report, "report.html")
    for link in set(re.findall(r"\]\((#[\w-]+)\)", table)):
        assert f'id="{link[1:]}"' in html
    assert f"#{anchor('Q1: does accuracy fall as projection rank falls?')}" in table
    lead = html[html.index('<div class="columns lead">'):html.index("<nav>")]
    assert '<table id="table-verdicts">' in lead and "<figure>" in lead
    assert html.index('<div class="columns lead">') < html.index("<h2")


def test_bootstrap_floors_print_as_bounds_with_their_caveat(report, run):
    # conftest runs use B = 100: a floor is p = 2/101, written "p < 0.020", never "p = 0.020".
    markdown = read(report, "report.md")
    n_boot = run.settings.n_boot
    floors = [c for e in run.analysis["q2"] for c in e["claims"]
              if claim_p(c, "p_e1").kind == "floor"]
    assert floors and n_boot == 100
    bound = format_p(2 / n_boot)
    assert f"p < {bound}" in markdown
    assert f"no bootstrap replicate of B = {n_boot} crossed zero" in markdown
    assert f"p = {format_p(2 / (n_boot + 1))}" not in markdown
    assert f"< {bound} ‡" in markdown and "‡ bootstrap p at its floor" in markdown


def test_a_smoke_run_says_so_at_the_top(report):
    markdown = read(report, "report.md")
    top = markdown[:markdown.index("**Verdicts")]
    assert "**Smoke run: 100 bootstrap replicates**" in top
    assert "100 bootstrap replicates (a smoke run)" in markdown


@pytest.mark.parametrize(("title", "expected"), [
    ("SVD minus random rank-k projection, per k", "SVD minus random rank-k projection, per k"),
    ("Accuracy against log2 k", "accuracy against log2 k"),
    ("E3 coverage by method", "E3 coverage by method"),
])
def test_titles_keep_acronyms_inside_a_sentence(title, expected):
    assert in_sentence(title) == expected


def test_a_figure_not_drawn_keeps_the_case_of_its_title(tmp_path: Path):
    # No random draws: the SVD-minus-random figure cannot be drawn.
    run = analyze_run(write_run(tmp_path / "nodraws", heads=("multiprobe",), seeds=(0, 1),
                                n_items=12, n_draws=0))
    markdown = read(write_report(run, tmp_path / "report"), "report.md")
    assert "(SVD minus random rank-k projection, per k) is not drawn" in markdown
    assert "sVD" not in markdown
