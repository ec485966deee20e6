"""Plot functions: each returns (fig, axes) drawn from analysis entries, saves nothing,
leaves global matplotlib settings alone, and puts estimates and intervals where the
analysis says."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from ablate.errors import AblateError
from ablate.plots import (
    DepthPanel,
    ErankPanel,
    LevelPanel,
    plot_adjacent_contrasts,
    plot_depth,
    plot_erank_trajectories,
    plot_erank_vs_length,
    plot_levels,
    plot_slopes_by_head,
    plot_svd_vs_random,
    plot_validation,
    plot_variance_components,
)
from ablate.plots.style import SEED, ForestRow, draw_forest, panel_grid
from ablate.questions import analyze_records
from ablate.stats.frames import item_covariates, pivot_erank, select
from tests.report.conftest import job_records, write_validation_csv


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.concat([job_records(head, seed, n_items=10, ks=(1, 2, 4), n_draws=2,
                                  n_iterations=3, rng=rng)
                      for head in ("multiprobe", "collapse") for seed in (0, 1, 2)],
                     ignore_index=True)


@pytest.fixture(scope="module")
def analysis(records) -> dict:
    return analyze_records(records, rng=np.random.default_rng(0), n_boot=50, tost_margin=2.0)


def _unablated(records: pd.DataFrame, head: str) -> pd.DataFrame:
    return select(records, config_label=head, intervention="none")


def all_figures(analysis: dict, records: pd.DataFrame, validation: pd.DataFrame) -> list:
    levels = [LevelPanel(e) for e in analysis["levels"] if e["outcome"] == "correct"]
    erank = [ErankPanel(e, pivot_erank(_unablated(records, e["config_label"])).values)
             for e in analysis["q3"]]
    depth = []
    for entry in analysis["q4"]:
        array = pivot_erank(_unablated(records, entry["config_label"]))
        covariates = item_covariates(_unablated(records, entry["config_label"]), array.item_ids)
        depth.append(DepthPanel(entry, array.values[:, :, -1].mean(axis=0),
                                covariates["depth_annotations"].to_numpy(),
                                covariates["n_tokens"].to_numpy()))
    power = analysis["power"]
    return [plot_levels([levels]), plot_svd_vs_random([analysis["q2"]]),
            plot_adjacent_contrasts([analysis["q1"]]), plot_erank_trajectories(erank),
            plot_slopes_by_head(analysis["q3"], analysis["q3_heads"]), plot_depth(depth),
            plot_erank_vs_length(depth),
            plot_variance_components(power["variance_components"], power["mde_table"]),
            plot_validation(validation)]


def test_every_plot_returns_fig_and_axes_and_saves_nothing(analysis, records, tmp_path,
                                                           monkeypatch):
    validation = pd.read_csv(write_validation_csv(tmp_path / "validation.csv"))
    monkeypatch.chdir(tmp_path)
    saved = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: saved.append(a))
    before = dict(matplotlib.rcParams)
    results = all_figures(analysis, records, validation)
    assert len(results) == 9
    for fig, axes in results:
        assert isinstance(fig, Figure)
        assert axes.ndim == 2 and all(ax.figure is fig for ax in axes.flat)
    assert saved == [] and sorted(p.name for p in tmp_path.iterdir()) == ["validation.csv"]
    # Styles apply per figure; global settings and pyplot's figure list are left alone.
    assert dict(matplotlib.rcParams) == before and plt.get_fignums() == []
    assert all(isinstance(fig.canvas, FigureCanvasAgg) for fig, _ in results)


def test_level_panel_has_one_thin_line_per_seed_and_the_mean(analysis):
    entry = next(e for e in analysis["levels"] if e["outcome"] == "correct")
    fig, axes = plot_levels([[LevelPanel(entry, {1: (10.0, 20.0)})]])
    lines = axes[0, 0].get_lines()
    seed_lines = [line for line in lines if to_hex(line.get_color()) == SEED]
    svd = sorted((r for r in entry["rows"] if r["condition"] == "svd_rank_k"),
                 key=lambda r: r["k"])
    assert len(seed_lines) == len(svd[0]["per_seed"]) == 3
    # The bold SVD line runs through the analysis means at log2 k.
    mean = next(line for line in lines if line.get_linewidth() == 2.2)
    assert np.allclose(mean.get_xdata(), np.log2([r["k"] for r in svd]))
    assert np.allclose(mean.get_ydata(), [r["estimate"] for r in svd])


def test_forest_rows_put_estimate_and_intervals_where_given():
    fig, axes = panel_grid(1, 1)
    ax = axes[0, 0]
    draw_forest(ax, [ForestRow("a", 2.0, (1.0, 3.0), (0.0, 4.0), (1.5, 2.5)),
                     ForestRow("b", -1.0, (-2.0, 0.5), None)])
    # Rows top to bottom: "a" at y = 1, "b" at y = 0.
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    thick = [line for line in ax.get_lines() if line.get_linewidth() == 4.0]
    assert sorted(tuple(line.get_xdata()) for line in thick) == [(-2.0, 0.5), (1.0, 3.0)]
    diamonds = {float(line.get_ydata()[0]): float(line.get_xdata()[0])
                for line in ax.get_lines() if line.get_marker() == "D"}
    assert diamonds == {1.0: 2.0, 0.0: -1.0}
    bars = ax.containers  # one E3 errorbar, for row "a" only
    assert len(bars) == 1
    segment = bars[0].lines[2][0].get_segments()[0]
    assert np.allclose(segment, [[0.0, 1.0], [4.0, 1.0]])


def test_a_missing_panel_says_why(analysis):
    fig, axes = plot_svd_vs_random([[analysis["q2"][0], None]])
    texts = [t.get_text() for t in axes[0, 1].texts]
    assert texts == ["no SVD vs random contrast for this head"]
    assert not axes[0, 1].axison


def test_validation_table_without_its_columns_is_a_user_error():
    with pytest.raises(AblateError, match="coverage_e3_truth"):
        plot_validation(pd.DataFrame({"method": ["E3"], "fpr_e3_null": [0.05]}))
