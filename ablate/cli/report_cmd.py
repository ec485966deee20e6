"""``ablate stats`` and ``ablate report``: analyse a run directory, print its claim tables
(or the analysis JSON), or write the full report.

Settings come from the run's ``[stats]`` table (or its experiment file's, when that was
edited after the run: a notice says so); ``--seed`` and ``--n-boot`` override it. Several
eval seeds are analysed together (each problem averaged over them); ``--eval-seed`` picks
one. A run with missing jobs is analysed too, but says "partial: 5 of 12 jobs" and exits
with code 3 unless ``--partial`` accepts that. The same run directory and options print
byte-identical output. Neither command imports torch.

    $ ablate stats runs/quickstart --json > analysis.json
    $ ablate report runs/quickstart            # writes reports/quickstart/
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # imported when a command runs (pandas, statsmodels, matplotlib)
    from ablate.report import RunAnalysis

EXIT_PARTIAL = 3  # a partial run analysed without --partial

RunDirArg = Annotated[Path, typer.Argument(help="Run directory written by `ablate run`.")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", min=0, help="Seed of the statistics' random generator \\[default: the run's "
                          "\\[stats] seed].")]
NBootOpt = Annotated[int | None, typer.Option(
    "--n-boot", min=10, help="Bootstrap replicates \\[default: the run's \\[stats] n_boot].")]
EvalSeedOpt = Annotated[int | None, typer.Option(
    "--eval-seed", help="Analyse one eval seed of a run that has several \\[default: all, "
                        "each problem averaged over them].")]
PartialOpt = Annotated[bool, typer.Option(
    "--partial", help="Accept a run with missing jobs (exit 0; without it: exit 3).")]
# Wide enough for the claim tables; fixed, so output does not depend on the terminal.
WIDTH = 160


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
    app.command("report")(report)


def _analyze(run_dir: Path, *, seed: int | None, n_boot: int | None,
             eval_seed: int | None) -> RunAnalysis:
    from ablate.report import analyze_run

    return analyze_run(run_dir, seed=seed, n_boot=n_boot, eval_seed=eval_seed)


def _notices(run: RunAnalysis) -> None:
    for notice in run.notices:
        typer.echo(notice, err=True)


def _finish_partial(run: RunAnalysis, partial: bool) -> None:
    """The one line of an incomplete run; exit code 3 unless --partial accepts it."""
    if not run.partial_text:
        return
    experiment = run.manifest.get("experiment_file") or "<experiment.toml>"
    if partial:
        typer.echo(f"{run.partial_text} finished; the analysis covers those only (--partial)",
                   err=True)
        return
    typer.echo(f"{run.partial_text} finished; the analysis covers those only. Finish the run "
               f"with `ablate run {experiment} --out {run.run_dir}` (it resumes), or pass "
               f"--partial to accept this (exit code 0 instead of {EXIT_PARTIAL})", err=True)
    raise typer.Exit(EXIT_PARTIAL)


def _header(console: Console, run: RunAnalysis) -> None:
    settings = run.settings
    console.print(f"{run.name}: {run.run_dir} (config hash "
                  f"{str(run.manifest.get('config_hash'))[:12]}), {run.n_finished} of "
                  f"{run.n_jobs} jobs, {len(run.records):,} records")
    margin = "none" if settings.tost_margin_pp is None else f"{settings.tost_margin_pp:g} pp"
    console.print(f"settings: {settings.level:.0%} intervals, n_boot {settings.n_boot}, "
                  f"seed {settings.seed}, equivalence margin {margin} ({settings.source})")
    if settings.smoke:
        console.print(f"smoke run: n_boot {settings.n_boot} is below the protocol's 2000; "
                      "intervals and p-values are rough, not for reporting")
    if run.eval_seeds:
        console.print(f"eval seeds {list(run.eval_seeds)}: each problem averaged over them "
                      "within its training seed (--eval-seed picks one)")
    for note in run.analysis.get("notes", []):
        console.print(f"note: {note}")


def stats(
    run_dir: RunDirArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the analysis as JSON.")] = False,
    seed: SeedOpt = None,
    n_boot: NBootOpt = None,
    eval_seed: EvalSeedOpt = None,
    partial: PartialOpt = False,
) -> None:
    """Run the statistics on a run directory and print the claim tables."""
    from ablate.report import analysis_json, table_views

    run = _analyze(run_dir, seed=seed, n_boot=n_boot, eval_seed=eval_seed)
    _notices(run)
    if as_json:
        typer.echo(analysis_json(run.analysis), nl=False)
        _finish_partial(run, partial)
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
        for note in view.notes:
            console.print(note)
    console.print(f"next: ablate report {run_dir}")
    _finish_partial(run, partial)


def report(
    run_dir: RunDirArg,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Report directory \\[default: reports/<run directory name>, plus "
                      "-eval-seedE, -seedS, -nbootB for the options given].")] = None,
    validation: Annotated[Path | None, typer.Option(
        "--validation", help="CSV of bench/stats_validation.py for the appendix \\[default: "
                             "bench/results/stats_validation.csv of the ablate checkout, if "
                             "it exists].")] = None,
    seed: SeedOpt = None,
    n_boot: NBootOpt = None,
    eval_seed: EvalSeedOpt = None,
    partial: PartialOpt = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a report of another run or other options in the report "
                        "directory.")] = False,
) -> None:
    """Write report.md, a self-contained report.html, figures, analysis.json and CSVs."""
    from ablate.report import (
        check_report_dir,
        default_report_dir,
        default_validation,
        read_validation,
        report_source,
        write_report,
    )

    if validation is None:
        validation = default_validation()
    read_validation(validation)  # a bad table fails now, not after the analysis
    console = Console(stderr=True)
    with console.status(f"analysing {run_dir}"):
        run = _analyze(run_dir, seed=seed, n_boot=n_boot, eval_seed=eval_seed)
    out_dir = out if out is not None else default_report_dir(run)
    check_report_dir(out_dir, report_source(run), force=force)  # before drawing figures
    _notices(run)
    with console.status(f"writing {out_dir}"):
        result = write_report(run, out_dir, validation=validation, force=force)
    printed = Console(soft_wrap=True, highlight=False, markup=False)
    printed.print(f"report: {out_dir / 'report.html'} (and report.md; {result.n_figures} "
                  f"figures, {sum(f.endswith('.csv') for f in result.files)} tables)")
    for figure in result.missing:
        printed.print(f"  figure {figure.number} not drawn: {figure.reason}")
    _finish_partial(run, partial)
