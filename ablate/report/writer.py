"""Writing a report directory, the only place in ablate that writes report files:

    report.md, report.html      the report (HTML self-contained: figures as base64 PNG)
    analysis.json               the analysis dict (ablate.stats schema)
    tables/<name>.csv           one CSV per non-empty table of tables_from_analysis
    figures/figNN-*.png, .svg   every figure in both formats

Output is deterministic: the same analysis gives byte-identical JSON, CSV, Markdown and
HTML, and (with one matplotlib version) identical PNG and SVG.

    >>> result = write_report(run, Path("reports/quickstart"))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ablate.errors import AblateError
from ablate.plots import VALIDATION_COLUMNS, figure_style
from ablate.report.assemble import build_blocks
from ablate.report.document import FigureBlock, to_html, to_markdown
from ablate.report.figures import MissingFigure, plan_figures
from ablate.report.run import RunAnalysis, analysis_json
from ablate.stats import tables_from_analysis

logger = logging.getLogger(__name__)

REPORT_FILES = ("report.md", "report.html", "analysis.json")
DEFAULT_VALIDATION = Path("bench") / "results" / "stats_validation.csv"
VALIDATION_HINT = ("no validation table: run `python bench/stats_validation.py` (writes "
                   f"{DEFAULT_VALIDATION}) and pass it with --validation")


@dataclass(frozen=True)
class ReportResult:
    """What ``write_report`` wrote, relative to ``out_dir``."""

    out_dir: Path
    files: tuple[str, ...]
    n_figures: int
    missing: tuple[MissingFigure, ...]


def read_validation(path: Path | None) -> pd.DataFrame | None:
    """The CSV of bench/stats_validation.py, checked for the columns the appendix shows."""
    if path is None:
        return None
    if not path.is_file():
        raise AblateError(f"validation table {path} not found; produce it with `python "
                          "bench/stats_validation.py` or drop --validation")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AblateError(f"validation table {path} is not a readable CSV ({error}); "
                          "regenerate it with `python bench/stats_validation.py`") from error
    missing = [c for c in VALIDATION_COLUMNS if c not in table.columns]
    if missing:
        raise AblateError(f"validation table {path} lacks column(s) {', '.join(missing)}; pass "
                          "the CSV written by bench/stats_validation.py")
    return table


def _prepare(out_dir: Path) -> None:
    """Create ``out_dir``, or clear the files of an earlier report in it; refuse a
    non-empty directory that is not a report, so nothing of the user's is deleted."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AblateError(f"--out {out_dir} exists and is not a directory; pass a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not any((out_dir / name).is_file() for name in REPORT_FILES):
            raise AblateError(f"--out {out_dir} is not empty and holds no earlier report "
                              "(no report.md or analysis.json); pass a new or empty directory")
        for name in REPORT_FILES:
            (out_dir / name).unlink(missing_ok=True)
        for pattern, folder in (("*.csv", "tables"), ("fig*.png", "figures"),
                                ("fig*.svg", "figures")):
            for old in (out_dir / folder).glob(pattern):
                old.unlink()
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)


def _write(path: Path, data: str | bytes) -> None:
    """Write through a temporary name, so a reader never sees half a file."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        temp.write_text(data, encoding="utf-8", newline="\n")
    else:
        temp.write_bytes(data)
    os.replace(temp, path)


def _save(fig: Figure, path_stem: Path) -> bytes:
    """Save PNG and SVG without timestamps or version strings; return the PNG bytes."""
    outputs = {}
    with figure_style():
        for fmt, metadata in (("png", {"Software": None}),
                              ("svg", {"Date": None, "Creator": None})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, metadata=metadata)
            outputs[fmt] = buffer.getvalue()
            # The first save laid the figure out; keep that layout instead of solving it again.
            fig.set_layout_engine("none")
    for fmt, data in outputs.items():
        _write(path_stem.with_suffix(f".{fmt}"), data)
    return outputs["png"]


def write_report(run: RunAnalysis, out_dir: Path, *, validation: Path | None = None
                 ) -> ReportResult:
    """Write the report of an analysed run into ``out_dir`` (see the module docstring)."""
    table = read_validation(validation)
    _prepare(out_dir)
    files = ["report.md", "report.html", "analysis.json"]
    _write(out_dir / "analysis.json", analysis_json(run.analysis))
    for name, frame in tables_from_analysis(run.analysis).items():
        if frame.empty:
            continue
        _write(out_dir / "tables" / f"{name}.csv", frame.to_csv(index=False, lineterminator="\n"))
        files.append(f"tables/{name}.csv")
    specs, missing = plan_figures(run, table, VALIDATION_HINT)
    counters: dict[int, int] = {}
    figures: dict[int, list[FigureBlock]] = {}
    for spec in specs:
        counters[spec.number] = counters.get(spec.number, 0) + 1
        fig, _ = spec.draw()  # outside pyplot: nothing to close, freed with the object
        png = _save(fig, out_dir / "figures" / spec.stem)
        total = sum(1 for s in specs if s.number == spec.number)
        letter = chr(ord("a") + counters[spec.number] - 1) if total > 1 else ""
        label = f"Figure {spec.number}{letter}: {spec.title}"
        figures.setdefault(spec.number, []).append(FigureBlock(
            label=label, caption=spec.caption, png=f"figures/{spec.stem}.png",
            svg=f"figures/{spec.stem}.svg", png_bytes=png))
        files += [f"figures/{spec.stem}.png", f"figures/{spec.stem}.svg"]
        logger.info("wrote %s", spec.stem)
    source = str(validation) if validation is not None else ""
    blocks = build_blocks(run, figures, missing, validation=table, validation_source=source,
                          files=files)
    _write(out_dir / "report.md", to_markdown(blocks))
    _write(out_dir / "report.html", to_html(blocks, title=f"Rank-ablation report: {run.name}"))
    return ReportResult(out_dir=out_dir, files=tuple(files), n_figures=len(specs),
                        missing=tuple(missing))
