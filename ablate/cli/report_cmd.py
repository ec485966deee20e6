"""``ablate stats`` and ``ablate report``: analyse a run directory, print its claim tables
(or the analysis JSON), or write the full report.

Settings come from the run's ``[stats]`` table; ``--seed`` and ``--n-boot`` override it.
The same run directory and options print byte-identical output.

    $ ablate stats runs/quickstart --json > analysis.json
    $ ablate report runs/quickstart            # writes reports/quickstart/
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ablate.report import (
    DEFAULT_VALIDATION,
    RunAnalysis,
    analysis_json,
    analyze_run,
    read_validation,
    table_views,
    write_report,
)

RunDirArg = Annotated[Path, typer.Argument(help="Run directory written by `ablate run`.")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", min=0, help="Seed of the statistics' random generator [default: the run's "
                          "[stats] seed].")]
NBootOpt = Annotated[int | None, typer.Option(
    "--n-boot", min=10, help="Bootstrap replicates [default: the run's [stats] n_boot].")]
EvalSeedOpt = Annotated[int | None, typer.Option(
    "--eval-seed", help="Analyse one eval seed of a run that has several.")]
# Wide enough for the claim tables; fixed, so output does not depend on the terminal.
WIDTH = 160


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
    app.command("report")(report)


def _header(console: Console, run: RunAnalysis) -> None:
    settings = run.settings
    done = run.n_jobs - len(run.missing_jobs)
    console.print(f"{run.name}: {run.run_dir} (config hash "
                  f"{str(run.manifest.get('config_hash'))[:12]}), {done} of {run.n_jobs} jobs, "
                  f"{len(run.records):,} records")
    margin = "none" if settings.tost_margin_pp is None else f"{settings.tost_margin_pp:g} pp"
    console.print(f"settings: {settings.level:.0%} intervals, n_boot {settings.n_boot}, "
                  f"seed {settings.seed}, equivalence margin {margin} ({settings.source})")
    if run.missing_jobs:
        console.print(f"incomplete: {len(run.missing_jobs)} job(s) missing, e.g. "
                      f"{run.missing_jobs[0]}; the tables cover finished jobs only")
    for note in run.analysis.get("notes", []):
        console.print(f"note: {note}")


def stats(
    run_dir: RunDirArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
    seed: SeedOpt = None,
    n_boot: NBootOpt = None,
    eval_seed: EvalSeedOpt = None,
) -> None:
    """Run the statistics on a run directory and print the claim tables."""
    run = analyze_run(run_dir, seed=seed, n_boot=n_boot, eval_seed=eval_seed)
    if as_json:
        typer.echo(analysis_json(run.analysis), nl=False)
        return
    console = Console(width=WIDTH, soft_wrap=False, highlight=False, markup=False)
    _header(console, run)
    views = table_views(run.analysis)
    if not views:
        console.print("no claim could be tested on these records")
    for view in views:
        table = Table(title=view.title, title_justify="left", show_lines=False)
        for column in view.columns:
            table.add_column(column, overflow="fold")
        for row in view.rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"next: ablate report {run_dir}")


def report(
    run_dir: RunDirArg,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Report directory [default: reports/<run name>].")] = None,
    validation: Annotated[Path | None, typer.Option(
        "--validation", help="CSV of bench/stats_validation.py for the appendix [default: "
                             f"{DEFAULT_VALIDATION} if it exists].")] = None,
    seed: SeedOpt = None,
    n_boot: NBootOpt = None,
    eval_seed: EvalSeedOpt = None,
) -> None:
    """Write report.md, a self-contained report.html, figures, analysis.json and CSVs."""
    if validation is None and DEFAULT_VALIDATION.is_file():
        validation = DEFAULT_VALIDATION
    read_validation(validation)  # a bad table fails now, not after the analysis
    console = Console(stderr=True)
    with console.status(f"analysing {run_dir}"):
        run = analyze_run(run_dir, seed=seed, n_boot=n_boot, eval_seed=eval_seed)
    out_dir = out if out is not None else Path("reports") / run.name
    with console.status(f"writing {out_dir}"):
        result = write_report(run, out_dir, validation=validation)
    printed = Console(soft_wrap=True, highlight=False, markup=False)
    printed.print(f"report: {out_dir / 'report.html'} (and report.md; {result.n_figures} "
                  f"figures, {sum(f.endswith('.csv') for f in result.files)} tables)")
    for figure in result.missing:
        printed.print(f"  figure {figure.number} not drawn: {figure.reason}")
    if run.missing_jobs:
        printed.print(f"  incomplete run: {len(run.missing_jobs)} of {run.n_jobs} jobs missing; "
                      "the report covers the finished jobs")
