"""``ablate validate`` and ``ablate run``: check an experiment file, then run its grid.

``validate`` loads every checkpoint and task the file names and checks sites, k and
tokenization without running a model (``--no-checkpoints`` checks only the file's
structure, for experiments whose checkpoints live elsewhere). ``run`` makes the same
checks, then runs every unfinished job into the run directory; rerunning the same
command resumes. Both also take a matrix-CODI study file (``kind = "codi_study"``), read
as the experiment it describes (same records, job ids and run directory).

    $ ablate validate experiments/quickstart.toml
    $ ablate run experiments/quickstart.toml --out runs/quickstart
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from ablate.cli.progress import RunDisplay
from ablate.errors import AblateError, Interrupted

if TYPE_CHECKING:  # imported when a command runs: `ablate --help` stays fast
    from ablate.executors import CheckSummary, Executor
    from ablate.experiment import Experiment

FileArg = Annotated[Path, typer.Argument(help="Experiment TOML file.")]
LimitOpt = Annotated[int | None, typer.Option(
    "--limit", min=1,
    help="Evaluate at most N items per task (changes the config hash, so its own run dir).")]
EXECUTOR_HELP = ("Where jobs run: local (one after another in this process), process (--workers "
                 "N jobs side by side on this machine) or ray (one Ray task per job; "
                 "docs/cluster.md).")
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=1,
    help="torch threads per job (default: the job's cores that other processes leave idle, "
         "decided again between batches; 1 per job with --workers N). Records do not "
         "depend on it.")]


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("run")(run)


def validate(
    files: Annotated[list[Path], typer.Argument(help="Experiment (or CODI study) TOML files.")],
    no_checkpoints: Annotated[bool, typer.Option(
        "--no-checkpoints",
        help="Check only the files' structure (for checkpoints that are not on this machine).",
    )] = False,
    limit: LimitOpt = None,
    estimate: Annotated[bool, typer.Option(
        "--estimate", help="Also time a short calibration (a few batches per model shape) "
                           "and project the run's wall time and peak memory on this machine, "
                           "per number of workers.")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Check experiment files, their checkpoints, tasks and interventions without running.

    Each file is checked and reported on its own; the exit code is 2 if any file fails."""
    failed = 0
    for file in files:
        try:
            _validate_one(file, no_checkpoints=no_checkpoints, limit=limit, estimate=estimate,
                          threads=threads)
        except AblateError as err:
            if len(files) == 1:
                raise
            failed += 1
            typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
    if failed:
        typer.secho(f"{failed} of {len(files)} files failed", err=True, fg=typer.colors.RED)
        raise typer.Exit(2)


def _validate_one(file: Path, *, no_checkpoints: bool, limit: int | None,
                  estimate: bool = False, threads: int | None = None) -> None:
    from ablate.executors import check_experiment
    from ablate.experiment import load_experiment

    if estimate and no_checkpoints:
        raise AblateError("--estimate runs the checkpoints, so it cannot go with "
                          "--no-checkpoints; drop one of them")
    experiment = load_experiment(file)
    console = Console(soft_wrap=True)
    _study_notice(console, file, experiment)
    if no_checkpoints:
        summary = check_experiment(experiment, checkpoints=False)
        console.print(f"{file}: structure OK; checkpoints not checked (--no-checkpoints)")
        _print_summary(console, experiment, summary)
        return
    experiment = experiment.resolve(limit=limit)
    summary = check_experiment(experiment)
    console.print(f"{file}: OK (config hash {experiment.config_hash()[:12]})")
    _print_summary(console, experiment, summary)
    if estimate:
        _print_estimate(console, experiment, threads)
    limit_flag = f" --limit {limit}" if limit else ""
    console.print(f"next: ablate run {file}{limit_flag}")


def _print_estimate(console: Console, experiment: Experiment, threads: int | None) -> None:
    from ablate.executors.estimate import (
        estimate_run,
        format_bytes,
        format_duration,
        worker_counts,
    )

    with Console(stderr=True).status("calibrating (a few batches per model shape)"):
        found = estimate_run(experiment, threads=threads)
    spent = sum(g.calibration_seconds for g in found.groups)
    console.print(f"estimate (calibrated on this machine in {format_duration(spent)}; "
                  f"{found.threads} torch thread(s) per job, {found.cores} cores):")
    if found.default_threads > found.threads:
        console.print(f"  one job at a time (the default) runs on {found.default_threads} "
                      f"threads while the cores are idle: {found.default_speedup:.2f}x "
                      "faster in the calibration")
    for group in found.groups:
        console.print(f"  {len(group.job_ids)} job(s) of {group.description}: "
                      f"{format_duration(group.seconds_per_job)} per job, peak "
                      f"{format_bytes(group.peak_bytes)} per job")
    console.print("  jobs at once    wall time    peak memory")
    for workers in worker_counts(found):
        how = "(default)" if workers == 1 else f"--workers {workers}"
        wall = format_duration(found.wall_seconds(workers))
        console.print(f"  {workers:<3} {how:<11} {wall:<12} "
                      f"{format_bytes(found.peak_bytes(workers))}")
    console.print("  (jobs side by side assume idle cores; a shared machine is slower)")


def _study_notice(console: Console, file: Path, experiment: Experiment) -> None:
    """One line saying that a CODI study file was read as the experiment it describes."""
    if experiment.codi_study is not None:
        console.print(f"note: {file} is a CODI study file (kind = \"codi_study\"), read as an "
                      "experiment of a model = \"codi\" checkpoint with the same records, job "
                      "ids and run directory (docs/architecture.md shows that syntax)",
                      markup=False, highlight=False)


def run(
    file: FileArg,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Run directory \\[default: runs/<name>].")] = None,
    executor: Annotated[str, typer.Option("--executor", help=EXECUTOR_HELP)] = "local",
    limit: LimitOpt = None,
    address: Annotated[str | None, typer.Option(
        "--address", help="Ray cluster to join: 'auto', 'HOST:6379' or 'ray://HOST:10001' "
                          "(default: a local Ray instance); --executor ray only.")] = None,
    cpus_per_job: Annotated[float | None, typer.Option(
        "--cpus-per-job", help="CPUs (and torch threads) per job (default: 1); "
                               "--executor ray only.")] = None,
    gpus_per_job: Annotated[float | None, typer.Option(
        "--gpus-per-job", help="GPUs per job, fractions allowed (default: 0); "
                               "--executor ray only.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Jobs run side by side in this many worker processes "
                                 "(the process executor; default: 1, in this process).")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Run an experiment's grid into a run directory (resumes an interrupted run); a
    matrix-CODI study file (kind = "codi_study") runs as the experiment it describes.

    Ctrl-C stops the run with exit code 130, keeping every finished job; the same command
    resumes it."""
    from ablate.executors import check_experiment, run_experiment
    from ablate.experiment import load_experiment
    from ablate.store import check_run_dir

    ray_options = {"address": address, "cpus_per_job": cpus_per_job,
                   "gpus_per_job": gpus_per_job}
    ray_options = {key: value for key, value in ray_options.items() if value is not None}
    experiment = load_experiment(file).resolve(limit=limit)
    if ray_options and executor != "ray":
        flag = "--" + next(iter(ray_options)).replace("_", "-")
        raise AblateError(f"{flag} applies to --executor ray, not '{executor}'; add "
                          f"--executor ray or drop {flag}")
    chosen = _executor(executor, workers, ray_options)
    run_dir = out if out is not None else Path("runs") / experiment.name
    check_run_dir(run_dir, experiment.config_hash())  # before the slower checks below
    console = Console(stderr=True)
    out_console = Console(soft_wrap=True)
    _study_notice(Console(stderr=True, soft_wrap=True), file, experiment)
    stats_notice = _stats_notice(run_dir, experiment, file)
    if stats_notice:
        out_console.print(stats_notice, markup=False, highlight=False)
    try:
        with console.status("checking checkpoints, tasks and interventions"):
            summary = check_experiment(experiment)
        for note in summary.notes:
            # Identity notes are listed by `ablate validate`; these change what the run means.
            if "out of distribution" in note or "ASSUMED" in note:
                console.print(f"warning: {note}")
        with RunDisplay(console) as progress, _closing(chosen):
            result = run_experiment(experiment, run_dir, executor=chosen, progress=progress,
                                    experiment_file=str(file), threads=threads)
    except KeyboardInterrupt:
        raise Interrupted(interrupted_line(run_dir)) from None
    done_before = f", {result.n_skipped} finished earlier" if result.n_skipped else ""
    out_console.print(f"results: {run_dir} ({result.n_jobs} jobs{done_before}; "
                      f"{summary.n_evaluations:,} item x condition evaluations)")
    out_console.print(f"next: ablate stats {run_dir}   then: ablate report {run_dir}")


def _executor(name: str, workers: int | None, ray_options: dict) -> Executor:
    """--executor and --workers: N workers mean the process executor (N = 1: this process)."""
    from ablate.executors import get_executor

    if workers is not None and name == "ray":
        raise AblateError("--workers applies to the local machine's process executor; with "
                          "--executor ray, Ray places the jobs (size them with --cpus-per-job)")
    if name == "local" and workers is not None and workers > 1:
        name = "process"
    if name == "process":
        return get_executor(name, workers=workers or 2)
    return get_executor(name, **ray_options)


@contextmanager
def _closing(executor: Executor) -> Iterator[None]:
    """Keep a process executor's workers for the run, and end them after it."""
    from ablate.executors import ProcessExecutor

    if isinstance(executor, ProcessExecutor):
        with executor:
            yield
    else:
        yield


def interrupted_line(run_dir: Path) -> str:
    """What an interrupted run kept, and how to resume it, in one line."""
    from ablate.store import job_counts

    counts = job_counts(run_dir)
    if counts is None:
        return "interrupted before the first job started: nothing was written"
    finished, total = counts
    return (f"interrupted: {finished} of {total} jobs finished in {run_dir} (kept); run the "
            "same command to resume")


def _stats_notice(run_dir: Path, experiment: Experiment, file: Path) -> str | None:
    """The one-line notice that this session adopts a changed [stats] table (analysis
    settings, not part of the config hash: the records stay valid)."""
    from ablate.experiment import stats_changes
    from ablate.store import MANIFEST, read_manifest

    if not (run_dir / MANIFEST).is_file():
        return None
    recorded = (read_manifest(run_dir).get("config") or {}).get("stats")
    changes = stats_changes(recorded, experiment.to_dict()["stats"])
    if not changes:
        return None
    return (f"note: [stats] of {file} differs from the run's ({'; '.join(changes)}); adopted: "
            "stats and report use it (records are unchanged)")


def _print_summary(console: Console, experiment: Experiment, summary: CheckSummary) -> None:
    shown = ", ".join(summary.conditions[:4]) + (" ..." if summary.n_conditions > 4 else "")
    console.print(f"  conditions   {summary.n_conditions} per job: {shown}")
    if summary.per_latents:
        console.print("               those that act with n latents: " + ", ".join(
            f"{n} latents: {count}" for n, count in summary.per_latents.items()))
    for note in summary.notes:
        console.print(f"               note: {note}")
    tasks = "; ".join(f"{t.name}/{t.split} {t.mode}" + (f" {t.few_shot}-shot" if t.few_shot else "")
                      for t in experiment.tasks)
    console.print(f"  tasks        {tasks}")
    axis = (f"{len(experiment.n_latents)} n_latents {list(experiment.n_latents)}"
            if experiment.model == "codi" else
            f"{len(experiment.iterations)} T {list(experiment.iterations)}")
    grid = f"{axis} x {len(experiment.eval_seeds)} eval seed(s)"
    if not summary.checkpoints:
        console.print(f"  checkpoints  {len(experiment.checkpoints)} entries (paths or globs)")
        console.print(f"  grid         per checkpoint: {len(experiment.tasks)} task(s) x {grid}")
        return
    labels = sorted({c["label"] for c in summary.checkpoints})
    shapes = sorted({c["shape"] for c in summary.checkpoints})
    console.print(f"  checkpoints  {len(summary.checkpoints)} ({', '.join(labels)}; "
                  f"{'; '.join(shapes)})")
    items = ", ".join(f"{name}: {n} items" for name, n in summary.items)
    console.print(f"  items        {items}")
    console.print(f"  grid         {len(summary.checkpoints)} checkpoints x "
                  f"{len(experiment.tasks)} task(s) x {grid} = {summary.n_jobs} jobs, "
                  f"{summary.n_evaluations:,} item x condition evaluations")
