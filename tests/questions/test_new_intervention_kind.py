"""A new intervention kind reaches the statistics, the figures and the report from its
registration alone: two kinds registered in this file only (an ablation and a control of
it, matched on k) run in a tiny experiment with svd_rank_k, and the analysis, the figures
and the report find them by their roles."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from ablate.executors import run_experiment
from ablate.experiment import load_experiment
from ablate.interventions import (
    Param,
    control_of,
    rank_identity,
    register_intervention,
    unregister_intervention,
)
from ablate.projections import (
    decompose,
    draw_generator,
    random_project,
    random_subspace,
    svd_project,
)
from ablate.report import analyze_run, write_report
from ablate.report.assemble import evidence_of
from ablate.report.figures import PlannedFigure, plan_figures
from tests.test_executors import one_torch_thread, write_experiment  # noqa: F401

K = Param("k", minimum=1, grid=True)


def bottom_rank_k(intervention, X: torch.Tensor, eval_seed: int, basis) -> torch.Tensor:
    """Keep the k smallest singular directions: X minus its best rank-(d - k) part."""
    return X - svd_project(decompose(X), X.shape[-1] - intervention.k)


def haar_rank_k(intervention, X: torch.Tensor, eval_seed: int, basis) -> torch.Tensor:
    """A Haar-random rank-k projection with its own seeds (draw 0.. per eval seed)."""
    generator = draw_generator(eval_seed + 7919, intervention.draw, intervention.k)
    return random_project(X, random_subspace(X.shape[-1], intervention.k, generator=generator))


@pytest.fixture
def new_kinds():
    register_intervention("bottom_rank_k", "keep the k smallest singular directions", (K,),
                          identity=rank_identity, short="bottom-k", display="bottom-k SVD",
                          )(bottom_rank_k)
    register_intervention("haar_rank_k", "Haar-random rank-k projection (control)",
                          (K, Param("draw", default=0, minimum=0, grid=True, count="draws")),
                          role=control_of("bottom_rank_k", matched_on=("k",)),
                          identity=rank_identity, short="Haar", display="Haar rank-k",
                          )(haar_rank_k)
    yield
    unregister_intervention("haar_rank_k")
    unregister_intervention("bottom_rank_k")


def test_a_kind_registered_here_reaches_statistics_figures_and_report(
        tmp_path: Path, new_kinds, one_torch_thread) -> None:  # noqa: F811
    path = write_experiment(tmp_path, iterations=[2], interventions=[
        {"name": "bottom_rank_k", "k": [1, 2]}, {"name": "haar_rank_k", "k": [1, 2], "draws": 2},
        {"name": "svd_rank_k", "k": [1, 2]}])
    run_experiment(load_experiment(path).resolve(), tmp_path / "run")
    run = analyze_run(tmp_path / "run", n_boot=50)
    analysis = run.analysis

    # Statistics: rows are selected by the role the registration declares.
    roles = {(row["condition"], row["role"]) for e in analysis["levels"] for row in e["rows"]}
    assert {("none", "unablated"), ("bottom_rank_k", "ablation"), ("haar_rank_k", "control"),
            ("svd_rank_k", "ablation")} <= roles
    assert {e["intervention"] for e in analysis["q1"]} == {"bottom_rank_k", "svd_rank_k"}
    (control, *_) = q2 = [e for e in analysis["q2"] if e["outcome"] == "answer_loglik"]
    assert len(q2) == 1 and (control["intervention"], control["control"]) == (
        "bottom_rank_k", "haar_rank_k")
    assert [c["k"] for c in control["claims"]] == [1, 2] and control["n_draws"] == 2
    assert control["claims"][0]["claim"] == ("bottom-k rank-1 answer_loglik differs from Haar "
                                             "rank-1")
    assert all(c["verdict"] for e in analysis["q2"] for c in e["claims"])  # through Holm

    # Figures: the Q1 and Q2 figures of the new kinds, and both in the accuracy-vs-k legend.
    report = write_report(run, tmp_path / "report")
    markdown = (report.out_dir / "report.md").read_text(encoding="utf-8")
    stems = {png.stem for png in (report.out_dir / "figures").glob("*.png")}
    trend_figure = "fig02-adjacent-contrasts-synthetic-teacher-forced-t2-head-input-bottom-rank-k"
    control_figure = ("fig03-ablation-minus-control-synthetic-teacher-forced-t2-head-input-"
                      "bottom-rank-k-vs-haar-rank-k")
    assert {trend_figure, control_figure} <= stems
    assert f"](figures/{control_figure}.png)" in markdown
    assert "Figure 3: bottom-k minus Haar rank-k projection, per k" in markdown
    plan = plan_figures(evidence_of(run), None)
    (levels,) = [item for item in plan["q1"] if isinstance(item, PlannedFigure)
                 and item.spec.name == "accuracy-vs-k"]
    fig, _ = levels.spec.draw()
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert {"bottom-k SVD (mean)", "Haar rank-k (mean)", "range over Haar draws",
            "SVD top-k (mean)"} <= set(legend)

    # The report: sections, summary and tables name the new kinds.
    assert "### multiprobe, synthetic teacher_forced T=2 at head_input, bottom_rank_k: " \
           "answer log-likelihood" in markdown
    assert "bottom_rank_k vs haar_rank_k: answer log-likelihood" in markdown
    assert "bottom-k minus Haar (answer log-likelihood, mean over 2 Haar draws" in markdown
    q1 = pd.read_csv(report.out_dir / "tables" / "q1.csv")
    assert set(q1["intervention"]) == {"bottom_rank_k", "svd_rank_k"}
