"""Writing a report directory, the only place in ablate that writes report files:

    report.md, report.html      the report (HTML self-contained: figures as base64 PNG)
    analysis.json               the analysis dict (ablate.stats schema)
    report_source.json          the run (directory, config hash) and options it reports on
    tables/<name>.csv           one CSV per non-empty table of tables_from_analysis
    figures/figNN-*.png, .svg   every figure in both formats

Output is deterministic: the same analysis gives byte-identical JSON, CSV, Markdown and
HTML, and (with one matplotlib version) identical PNG and SVG. A report directory holds
one run's report under one set of options: ``default_report_dir`` derives its name from
both, and ``write_report`` refuses to replace the report of another run or other options
unless ``force``.

    >>> result = write_report(run, default_report_dir(run))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ablate.errors import AblateError
from ablate.plots import VALIDATION_COLUMNS, figure_style
from ablate.questions import tables_from_analysis
from ablate.questions.base import MissingFigure
from ablate.questions.blocks import Block, FigureBlock, Note
from ablate.report.assemble import build_blocks, evidence_of, report_title
from ablate.report.document import to_html, to_markdown
from ablate.report.figures import PlannedFigure, plan_figures
from ablate.report.run import RunAnalysis, analysis_json

logger = logging.getLogger(__name__)

REPORT_FILES = ("report.md", "report.html", "analysis.json")
SOURCE_FILE = "report_source.json"
DEFAULT_VALIDATION = Path("bench") / "results" / "stats_validation.csv"
# The checkout this package runs from (an editable install), whose bench/ holds the table.
CHECKOUT = Path(__file__).resolve().parents[2]
# Short names of the analysis options in report directory names.
OPTION_SUFFIXES = (("eval_seed", "eval-seed"), ("seed", "seed"), ("n_boot", "nboot"))
VALIDATION_HINT = ("no validation table: run `python bench/stats_validation.py` (writes "
                   f"{DEFAULT_VALIDATION}) and pass it with --validation")


@dataclass(frozen=True)
class ReportResult:
    """What ``write_report`` wrote, relative to ``out_dir``."""

    out_dir: Path
    files: tuple[str, ...]
    n_figures: int
    missing: tuple[MissingFigure, ...]


def default_validation() -> Path | None:
    """bench/results/stats_validation.csv of the checkout ablate runs from, else of the
    working directory; None when neither exists (the appendix then says how to make it)."""
    for root in (CHECKOUT, Path.cwd()):
        if (root / DEFAULT_VALIDATION).is_file():
            return root / DEFAULT_VALIDATION
    return None


def default_report_dir(run: RunAnalysis) -> Path:
    """reports/<run directory name>, plus one suffix per analysis option given (e.g.
    ``reports/quickstart-eval-seed1``): reports of other runs or options get other
    directories."""
    name = run.run_dir.resolve().name or "run"
    suffix = "".join(f"-{short}{run.options[key]}" for key, short in OPTION_SUFFIXES
                     if run.options.get(key) is not None)
    return Path("reports") / f"{name}{suffix}"


def report_source(run: RunAnalysis) -> dict[str, object]:
    """What a report directory reports on: the run directory, its config hash, and the
    options given (the contents of ``report_source.json``)."""
    return {"run_dir": str(run.run_dir.resolve()),
            "config_hash": run.manifest.get("config_hash"),
            "options": {key: value for key, value in sorted(run.options.items())
                        if value is not None}}


def _describe_source(source: dict[str, object]) -> str:
    options = source.get("options")
    given = ", ".join(f"{key}={value}" for key, value in options.items()
                      ) if isinstance(options, dict) else ""
    return f"{source.get('run_dir')}" + (f" with {given}" if given else "")


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


def check_report_dir(out_dir: Path, source: dict[str, object], *, force: bool = False) -> None:
    """Raise unless ``out_dir`` is new, empty, or holds a report of the same run and
    options (``force`` allows replacing the report of another run or other options, never
    files that are not a report)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AblateError(f"--out {out_dir} exists and is not a directory; pass a directory")
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not any((out_dir / name).is_file() for name in REPORT_FILES):
        raise AblateError(f"--out {out_dir} is not empty and holds no earlier report "
                          "(no report.md or analysis.json); pass a new or empty directory")
    try:
        earlier = json.loads((out_dir / SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        earlier = _legacy_source(out_dir, source)
    if earlier == source or force:
        return
    what = (f"the report of {_describe_source(earlier)}" if isinstance(earlier, dict)
            else f"a report without {SOURCE_FILE} (of an unknown run)")
    raise AblateError(f"{out_dir} holds {what}, not of {_describe_source(source)}; pass "
                      "another --out, or --force to replace it")


_LEGACY_RUN_DIR = re.compile(r"from the run directory `([^`]+)`")


def _legacy_source(out_dir: Path, source: dict[str, object]) -> dict[str, object] | None:
    """The source of a report written before report_source.json existed, as far as its
    report.md tells (the run directory, as typed then); ``source`` itself when that names
    the same run directory and no option was given, so such a report is replaced."""
    try:
        found = _LEGACY_RUN_DIR.search((out_dir / "report.md").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    if found is None:
        return None
    same = str(Path(found.group(1)).resolve()) == source.get("run_dir")
    return source if same and not source.get("options") else {"run_dir": found.group(1)}


def _prepare(out_dir: Path, source: dict[str, object], *, force: bool) -> None:
    """Create ``out_dir``, or clear the files of an earlier report in it (see
    ``check_report_dir``: nothing of the user's or of another report is deleted)."""
    check_report_dir(out_dir, source, force=force)
    if out_dir.is_dir() and any(out_dir.iterdir()):
        for name in (*REPORT_FILES, SOURCE_FILE):
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


def in_sentence(title: str) -> str:
    """A title inside a sentence: its first letter lower-cased, unless the first word is an
    acronym or a name ("SVD minus random", "E3 ...", "Q1 ...") that keeps its case."""
    first = title.split(" ", 1)[0]
    if not title or any(ch.isupper() or ch.isdigit() for ch in first[1:]):
        return title
    return title[0].lower() + title[1:]


def write_report(run: RunAnalysis, out_dir: Path, *, validation: Path | None = None,
                 force: bool = False) -> ReportResult:
    """Write the report of an analysed run into ``out_dir`` (see the module docstring);
    ``force`` replaces a report of another run or other options found there."""
    table = read_validation(validation)
    source = report_source(run)
    _prepare(out_dir, source, force=force)
    files = ["report.md", "report.html", "analysis.json", SOURCE_FILE]
    _write(out_dir / SOURCE_FILE, json.dumps(source, indent=2) + "\n")
    _write(out_dir / "analysis.json", analysis_json(run.analysis))
    for name, frame in tables_from_analysis(run.analysis).items():
        if frame.empty:
            continue
        _write(out_dir / "tables" / f"{name}.csv", frame.to_csv(index=False, lineterminator="\n"))
        files.append(f"tables/{name}.csv")
    plan = plan_figures(evidence_of(run), table, VALIDATION_HINT)
    figures: dict[str, list[Block]] = {}
    numbers: dict[str, dict[str, int]] = {}
    missing: list[MissingFigure] = []
    n_figures = 0
    for key, items in plan.items():
        blocks = figures.setdefault(key, [])
        for item in items:
            numbers.setdefault(key, {})[item.spec.name if isinstance(item, PlannedFigure)
                                        else item.name] = item.number
            if isinstance(item, MissingFigure):
                missing.append(item)
                blocks.append(Note(f"Figure {item.number} ({in_sentence(item.title)}) is not "
                                   f"drawn: {item.reason}."))
                continue
            fig, _ = item.spec.draw()  # outside pyplot: nothing to close, freed with the object
            png = _save(fig, out_dir / "figures" / item.stem)
            blocks.append(FigureBlock(label=item.label, caption=item.spec.caption,
                                      png=f"figures/{item.stem}.png",
                                      svg=f"figures/{item.stem}.svg", png_bytes=png,
                                      name=item.spec.name))
            files += [f"figures/{item.stem}.png", f"figures/{item.stem}.svg"]
            n_figures += 1
            logger.info("wrote %s", item.stem)
    source = str(validation) if validation is not None else ""
    blocks = build_blocks(run, figures, numbers, validation=table, validation_source=source,
                          files=files)
    _write(out_dir / "report.md", to_markdown(blocks))
    _write(out_dir / "report.html", to_html(blocks, title=report_title(run)))
    return ReportResult(out_dir=out_dir, files=tuple(files), n_figures=n_figures,
                        missing=tuple(missing))
