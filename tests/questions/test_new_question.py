"""A new research question is one module and one registration line: this file is that
module (a question asking whether each head's unablated accuracy differs from 50%, with
its typed entry, claim, table, prose and figure), and the test registers it with one call
and finds it in analysis.json, the CSV tables, `ablate stats` and the report, without
moving any other question's numbers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from ablate.cli import main
from ablate.plots.style import panel_grid, styled
from ablate.questions import QUESTIONS, register_question, unregister_question
from ablate.questions.base import (
    AnalysisContext,
    Evidence,
    FigureItem,
    FigureSpec,
    Finding,
    GroupEntry,
    GroupRows,
    Question,
)
from ablate.questions.blocks import Block, Heading, Paragraph, TableView
from ablate.questions.words import CLAIM_COLUMNS, claim_blocks, claim_cells, head_scope
from ablate.report import analyze_run, write_report
from ablate.stats import mean_interval
from ablate.stats.claims import Claim, interval_claim
from ablate.stats.frames import pivot_condition
from tests.report.conftest import write_run

TITLE = "Q6: is unablated accuracy different from a coin flip?"


@dataclass
class CoinEntry(GroupEntry):
    output: ClassVar[str] = "q6"
    n_items: int
    claims: list[Claim]
    notes: list[str]


@styled
def plot_coin(entries):
    fig, axes = panel_grid(1, 1)
    axes[0, 0].bar(range(len(entries)), [e["claims"][0]["estimate"] for e in entries])
    return fig, axes


class Coin(Question):
    key = "q6"
    outputs = ("q6",)
    claim_outputs = ("q6",)
    title = TITLE
    needs = "correct"

    def at_group(self, group: GroupRows, ctx: AnalysisContext) -> list[Finding]:
        if group.unablated.empty:
            return []
        accuracy = pivot_condition(group.unablated, "correct")
        result = mean_interval(100 * accuracy.values - 50, **ctx.options)
        claim = interval_claim(result, claim="unablated accuracy differs from 50%",
                               family=group.key.family("q6"), unit="pp")
        return [CoinEntry(**group.key.as_dict(), n_items=len(accuracy.item_ids),
                          claims=[claim], notes=[])]

    def section(self, evidence: Evidence) -> list[Block]:
        blocks: list[Block] = [Heading(2, TITLE), Paragraph("Accuracy minus 50 pp.")]
        for entry in evidence.analysis["q6"]:
            blocks += claim_blocks(entry["claims"][0], level=evidence.level,
                                   lead=f"{head_scope(entry)}: accuracy minus 50 pp.")
        return blocks

    def figures(self, evidence: Evidence) -> list[FigureItem]:
        entries = evidence.analysis["q6"]
        return [FigureSpec("coin", "Accuracy minus 50 pp by head", "", "One bar per head.",
                           lambda: plot_coin(entries))]

    def views(self, analysis: Mapping[str, Any]) -> list[TableView]:
        rows = [(head_scope(e), *claim_cells(c)) for e in analysis["q6"] for c in e["claims"]]
        return [TableView("q6", "Q6: accuracy minus 50 pp", ("group", *CLAIM_COLUMNS),
                          tuple(rows))]


@pytest.fixture
def coin():
    register_question(Coin())  # the one registration line
    yield
    unregister_question("q6")


def test_a_question_defined_here_reaches_analysis_json_and_the_report(
        tmp_path: Path, coin, capsys) -> None:
    run_dir = write_run(tmp_path / "runs" / "coin", heads=("multiprobe", "collapse"),
                        seeds=(0, 1), n_items=8, ks=(1, 2), n_draws=1)
    assert [q.key for q in QUESTIONS][-1] == "q6"
    run = analyze_run(run_dir)
    entries = run.analysis["q6"]
    assert [e["config_label"] for e in entries] == ["collapse", "multiprobe"]
    accuracy = pivot_condition(run.records[run.records["config_label"] == "collapse"],
                               "correct", intervention="none").values
    claim = entries[0]["claims"][0]
    assert claim["estimate"] == pytest.approx(100 * accuracy.mean() - 50)
    assert claim["p_holm_e3"] is not None and claim["verdict"]  # Holm ran over it too

    report = write_report(run, tmp_path / "report")
    written = json.loads((report.out_dir / "analysis.json").read_text(encoding="utf-8"))
    assert written["q6"] == entries and list(written)[-2:] == ["power", "q6"]
    assert (report.out_dir / "tables" / "q6.csv").is_file()
    markdown = (report.out_dir / "report.md").read_text(encoding="utf-8")
    section = markdown[markdown.index(f"## {TITLE}"):]
    assert section.index("collapse, gsm8k teacher_forced T=3: accuracy minus 50 pp") \
        < section.index("![Figure 10: Accuracy minus 50 pp by head](figures/fig10-coin.png)") \
        < section.index("**Q6: accuracy minus 50 pp**") < section.index("## Appendix")
    # Figures are numbered where the report shows them: the validation figure comes next.
    assert [(m.name, m.number) for m in report.missing] == [("validation", 11)]

    assert main(["stats", str(run_dir)]) == 0
    assert "Q6: accuracy minus 50 pp" in capsys.readouterr().out


def test_a_new_question_moves_no_other_question_s_numbers(tmp_path: Path) -> None:
    # Each question added after the built-in ones draws from its own random stream.
    run_dir = write_run(tmp_path / "run", heads=("multiprobe",), seeds=(0, 1), n_items=10,
                        ks=(1, 2), n_draws=1)
    without = analyze_run(run_dir).analysis
    register_question(Coin())
    try:
        with_coin = analyze_run(run_dir).analysis
    finally:
        unregister_question("q6")
    assert with_coin.pop("q6") and with_coin == without
    assert np.isfinite(without["q1"][0]["claims"][0]["e1"][0])
