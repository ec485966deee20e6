"""``ablate validate`` and ``ablate run``: check an experiment file, then run its grid.

``validate`` loads every checkpoint and task the file names and checks sites, k and
tokenization without running a model (``--no-checkpoints`` checks only the file's
structure, for experiments whose checkpoints live elsewhere). ``run`` makes the same
checks, then runs every unfinished job into the run directory; rerunning the same
command resumes. Both also take a matrix-CODI study file (``kind = "codi_study"``), which
``run`` hands to the study runner of ``ablate codi study``.

    $ ablate validate experiments/quickstart.toml
    $ ablate run experiments/quickstart.toml --out runs/quickstart
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ablate.errors import AblateError
from ablate.executors import EXECUTORS, CheckSummary, check_experiment, get_executor, run_experiment
from ablate.experiment import Experiment, Job, load_experiment
from ablate.store import check_run_dir

FileArg = Annotated[Path, typer.Argument(help="Experiment TOML file.")]
LimitOpt = Annotated[int | None, typer.Option(
    "--limit", min=1,
    help="Evaluate at most N items per task (changes the config hash, so its own run dir).")]


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("run")(run)


def validate(
    file: FileArg,
    no_checkpoints: Annotated[bool, typer.Option(
        "--no-checkpoints",
        help="Check only the file's structure (for checkpoints that are not on this machine).",
    )] = False,
    limit: LimitOpt = None,
) -> None:
    """Check an experiment file, its checkpoints, tasks and interventions without running."""
    if _is_codi_study(file):
        _validate_study(file, checkpoints=not no_checkpoints, limit=limit)
        return
    experiment = load_experiment(file)
    console = Console(soft_wrap=True)
    if no_checkpoints:
        summary = check_experiment(experiment, checkpoints=False)
        console.print(f"{file}: structure OK; checkpoints not checked (--no-checkpoints)")
        _print_summary(console, experiment, summary)
        return
    experiment = experiment.resolve(limit=limit)
    summary = check_experiment(experiment)
    console.print(f"{file}: OK (config hash {experiment.config_hash()[:12]})")
    _print_summary(console, experiment, summary)
    limit_flag = f" --limit {limit}" if limit else ""
    console.print(f"next: ablate run {file}{limit_flag}")


def _validate_study(file: Path, *, checkpoints: bool, limit: int | None) -> None:
    """A CODI study's structure, then (unless ``checkpoints`` is False) its model and items."""
    from ablate.codi.study import expand_latent_conditions, load_solver, load_study_items
    from ablate.codi.study_config import load_study

    study = load_study(file).with_limit(limit)
    console = Console(soft_wrap=True)
    if not checkpoints:
        console.print(f"{file}: structure OK (a matrix-CODI study); checkpoint not checked "
                      "(--no-checkpoints)")
        return
    solver = load_solver(study)
    items = load_study_items(study)
    unknown = sum(not item.depth_annotations for item in items)
    per_job = {n: len(expand_latent_conditions(study, n, solver.mat_dim))
               for n in study.n_latents}
    console.print(f"{file}: OK (a matrix-CODI study, config hash {study.config_hash()[:12]})")
    console.print(f"  checkpoint   {study.checkpoint.label} ({study.checkpoint.kind}, "
                  f"d={solver.mat_dim})")
    console.print(f"  items        {study.task.name}/{study.task.split}: {len(items)} problems, "
                  f"{unknown} without calculator annotations (depth NA)")
    console.print("  conditions   " + ", ".join(f"{n} latents: {c}" for n, c in per_job.items()))
    limit_flag = f" --limit {limit}" if limit else ""
    console.print(f"next: ablate run {file}{limit_flag}")


def _is_codi_study(file: Path) -> bool:
    """CODI rank-dynamics studies share the TOML form; ``ablate.codi`` runs them."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(Path(file).read_text())
    except (OSError, ValueError):
        return False  # load_experiment reports the problem with the file
    return data.get("kind") == "codi_study"


def run(
    file: FileArg,
    out: Annotated[Path | None, typer.Option(
        "--out", help="Run directory [default: runs/<name>].")] = None,
    executor: Annotated[str, typer.Option(
        "--executor", help=f"Where jobs run: {', '.join(sorted(EXECUTORS))}.")] = "local",
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
) -> None:
    """Run an experiment's grid into a run directory (resumes an interrupted run); a
    matrix-CODI study file (kind = "codi_study") runs as `ablate codi study` would."""
    ray_options = {"address": address, "cpus_per_job": cpus_per_job,
                   "gpus_per_job": gpus_per_job}
    ray_options = {key: value for key, value in ray_options.items() if value is not None}
    if _is_codi_study(file):
        if executor != "local" or ray_options:
            raise AblateError(f"{file} is a matrix-CODI study, which runs on the local "
                              "executor only; drop --executor and the Ray options")
        from ablate.cli.codi_cmd import run_study_file

        run_study_file(file, out, limit=limit)
        return
    experiment = load_experiment(file).resolve(limit=limit)
    if ray_options and executor != "ray":
        flag = "--" + next(iter(ray_options)).replace("_", "-")
        raise AblateError(f"{flag} applies to --executor ray, not '{executor}'; add "
                          f"--executor ray or drop {flag}")
    chosen = get_executor(executor, **ray_options)
    run_dir = out if out is not None else Path("runs") / experiment.name
    check_run_dir(run_dir, experiment.config_hash())  # before the slower checks below
    console = Console(stderr=True)
    with console.status("checking checkpoints, tasks and interventions"):
        summary = check_experiment(experiment)
    for note in summary.notes:
        # Identity notes are listed by `ablate validate`; these change what the run means.
        if "out of distribution" in note or "ASSUMED" in note:
            console.print(f"warning: {note}")
    with _RichProgress(console) as progress:
        result = run_experiment(experiment, run_dir, executor=chosen, progress=progress,
                                experiment_file=str(file))
    out_console = Console(soft_wrap=True)
    done_before = f", {result.n_skipped} finished earlier" if result.n_skipped else ""
    out_console.print(f"results: {run_dir} ({result.n_jobs} jobs{done_before}; "
                      f"{summary.n_evaluations:,} item x condition evaluations)")
    out_console.print(f"next: ablate stats {run_dir}   then: ablate report {run_dir}")


def _print_summary(console: Console, experiment: Experiment, summary: CheckSummary) -> None:
    shown = ", ".join(summary.conditions[:4]) + (" ..." if summary.n_conditions > 4 else "")
    console.print(f"  conditions   {summary.n_conditions} per job: {shown}")
    for note in summary.notes:
        console.print(f"               note: {note}")
    tasks = "; ".join(f"{t.name}/{t.split} {t.mode}" + (f" {t.few_shot}-shot" if t.few_shot else "")
                      for t in experiment.tasks)
    console.print(f"  tasks        {tasks}")
    grid = (f"{len(experiment.iterations)} T {list(experiment.iterations)} x "
            f"{len(experiment.eval_seeds)} eval seed(s)")
    if not summary.checkpoints:
        console.print(f"  checkpoints  {len(experiment.checkpoints)} entries (paths or globs)")
        console.print(f"  grid         per checkpoint: {len(experiment.tasks)} task(s) x {grid}")
        return
    labels = sorted({c["label"] for c in summary.checkpoints})
    shapes = sorted({f"d={c['d']}, {c['n_layers']} layers" for c in summary.checkpoints})
    console.print(f"  checkpoints  {len(summary.checkpoints)} ({', '.join(labels)}; "
                  f"{'; '.join(shapes)})")
    items = ", ".join(f"{name}: {n} items" for name, n in summary.items)
    console.print(f"  items        {items}")
    console.print(f"  grid         {len(summary.checkpoints)} checkpoints x "
                  f"{len(experiment.tasks)} task(s) x {grid} = {summary.n_jobs} jobs, "
                  f"{summary.n_evaluations:,} item x condition evaluations")


class _RichProgress:
    """Two bars: jobs of the run, and (item, condition) records of the current job. They
    appear once the run directory is open, so a refusal prints only its error line."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[detail]}"), console=console)
        self.jobs: TaskID | None = None
        self.records: TaskID | None = None

    def __enter__(self) -> _RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.jobs is not None:
            self.bar.stop()

    def start(self, n_jobs: int, n_finished: int) -> None:
        self.bar.start()
        detail = f"{n_finished} finished earlier" if n_finished else ""
        self.jobs = self.bar.add_task("jobs", total=n_jobs, completed=n_finished, detail=detail)
        self.records = self.bar.add_task("records", total=None, detail="")

    def records_done(self, job: Job, done: int, total: int) -> None:
        assert self.records is not None
        self.bar.update(self.records, completed=done, total=total, detail=job.job_id)

    def job_done(self, job: Job) -> None:
        assert self.jobs is not None
        self.bar.advance(self.jobs)
