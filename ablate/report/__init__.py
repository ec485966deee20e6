"""Reports of a run: statistics in words with their intervals, tables and figures, written
as Markdown, a self-contained HTML page, JSON and CSV. The only package that writes report
files; ``ablate stats`` and ``ablate report`` are its command-line front ends.

    >>> run = analyze_run("runs/quickstart")  # doctest: +SKIP
    >>> write_report(run, default_report_dir(run))  # reports/quickstart  # doctest: +SKIP
"""

from __future__ import annotations

from ablate.questions import table_views
from ablate.questions.blocks import TableView
from ablate.report.run import (
    AnalysisSettings,
    RunAnalysis,
    analysis_json,
    analysis_settings,
    analyze_run,
    load_records,
)
from ablate.report.writer import (
    DEFAULT_VALIDATION,
    ReportResult,
    check_report_dir,
    default_report_dir,
    default_validation,
    read_validation,
    report_source,
    write_report,
)

__all__ = [
    "DEFAULT_VALIDATION",
    "AnalysisSettings",
    "ReportResult",
    "RunAnalysis",
    "TableView",
    "analysis_json",
    "analysis_settings",
    "analyze_run",
    "check_report_dir",
    "default_report_dir",
    "default_validation",
    "load_records",
    "read_validation",
    "report_source",
    "table_views",
    "write_report",
]
