"""``ablate train``: train Matrix Thinkers, one checkpoint directory per seed.

The flags are generated from the fields of ``ablate.train.TrainConfig``
(``ablate.cli.options``), so they carry the fields' names, help and defaults; ``--config``
reads a TOML file of the same keys, which flags override. ``--variant`` picks attention
and head together (``--attention``/``--head`` override it). ``--seed`` may repeat or hold
a list ("0,1,2"); with several seeds, ``--out`` should contain "{seed}" (otherwise each
seed goes to OUT/seed<N>). Rerunning the same command resumes unfinished seeds and
skips finished ones. ``ablate train --codi ...`` trains a matrix-CODI model instead (it is
``ablate codi train ...``; see ablate/cli/codi_cmd.py).

    $ ablate train --variant byte_frobenius_multiprobe --mat-dim 8 --steps 600 \\
        --seed 0,1,2 --out checkpoints/multiprobe-seed{seed}
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ablate.cli.options import command_line, config_from_command_line, config_options
from ablate.errors import AblateError
from ablate.train import TrainConfig, variant_parts

if TYPE_CHECKING:  # the trainer loads torch: only a run imports it, not --help
    from ablate.train import TrainProgress, TrainResult


def parse_seeds(values: list[str]) -> list[int]:
    """["0", "1,2"] -> [0, 1, 2]; duplicates are an error."""
    seeds: list[int] = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            if not part.isdigit():
                raise AblateError(
                    f"--seed {part!r} is not a non-negative integer; write e.g. --seed 0,1,2"
                )
            seeds.append(int(part))
    if not seeds:
        raise AblateError("--seed is empty; pass e.g. --seed 0 or --seed 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise AblateError(f"--seed lists a seed twice ({seeds}); list each seed once")
    return seeds


def output_for_seed(out: str, seed: int, n_seeds: int) -> str:
    """``out`` with "{seed}" filled in; several seeds without it get OUT/seed<N>."""
    if "{seed}" in out:
        return out.replace("{seed}", str(seed))
    return os.path.join(out, f"seed{seed}") if n_seeds > 1 else out


def _describe(event: TrainProgress) -> str:
    parts = []
    if event.loss is not None:
        parts.append(
            f"loss {event.loss:.3f}  bpb {event.bpb:.3f}  rank(M_T) {event.train_rank:.2f}"
        )
    return "  ".join(parts)


def _validation_line(step: int, metrics: dict) -> str:
    ranks = " ".join(f"{r:.2f}" for r in metrics["rank_per_iter"])
    accuracy = metrics.get("answer_accuracy")
    answer = (
        "" if accuracy is None else f"  answer acc {accuracy:.3f} (n={metrics['n_answer_items']})"
    )
    return (
        f"step {step}: val loss {metrics['loss']:.4f}  val bpb {metrics['bpb']:.4f}{answer}"
        f"  val rank M(0..T) {ranks}"
    )


def run_seed(
    config: TrainConfig, resume: bool, console: Console, command: list[str]
) -> TrainResult:
    """Train one seed under a rich progress bar."""
    from ablate.train import train

    columns = (
        TextColumn(f"seed {config.seed}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[metrics]}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("train", total=config.steps, metrics="")

        def show(event: TrainProgress) -> None:
            if event.event == "start" and event.resumed_from:
                bar.console.print(f"resuming {config.out} from step {event.resumed_from}")
            text = _describe(event)
            bar.update(task, completed=event.step, **({"metrics": text} if text else {}))
            if text and not console.is_terminal:
                # No live bar in a log file: one line per logged step instead.
                bar.console.print(f"seed {config.seed} step {event.step}/{event.steps}  {text}")
            if event.event == "eval" and event.validation is not None:
                bar.console.print(_validation_line(event.step, event.validation))

        result = train(config, progress=show, resume=resume, command=command)
    if result.already_done:
        console.print(
            f"{config.out}: already trained ({result.steps_done} steps); "
            "pass --no-resume to retrain"
        )
    return result


def _summary(result: TrainResult) -> str:
    final = result.final
    accuracy, majority = final.get("answer_accuracy"), final.get("majority_answer_accuracy")
    answer = (
        "" if accuracy is None else f"  answer acc {accuracy:.3f} (always-majority {majority:.3f})"
    )
    ranks = " ".join(f"{r:.2f}" for r in final["rank_per_iter"])
    return (
        f"{result.out}: val loss {final['loss']:.4f}  bpb {final['bpb']:.4f} "
        f"(unigram {final['unigram_bpb']:.3f}, uniform 8){answer}  rank M(0..T) {ranks}  "
        f"{result.seconds / 60:.1f} min"
    )


def register(app: typer.Typer) -> None:
    @app.command("train")
    @config_options(TrainConfig, skip=("seed",))
    def train_command(
        ctx: typer.Context,
        given: dict,
        variant: str = typer.Option(
            None, "--variant", rich_help_panel="Model",
            help="Research variant (sets attention and head)."),
        seed: Annotated[list[str] | None, typer.Option(
            "--seed", rich_help_panel="Optimisation", metavar="SEEDS",
            help="Seed(s) of the initial weights and data order: repeat or '0,1,2' "
            "(default 0).")] = None,
        config_file: str = typer.Option(
            None, "--config", help="TOML file of train config keys; flags override it."),
        threads: int = typer.Option(
            0, "--threads",
            help="CPU threads for torch (0: torch's default); 1 suits tiny models."),
        resume: bool = typer.Option(
            True, "--resume/--no-resume", help="Continue an interrupted run in --out (default)."),
        codi: bool = typer.Option(
            False, "--codi", help="Train a matrix-CODI model instead: the same as "
            "`ablate codi train` with the flags that follow (see `ablate codi train --help`)."),
    ) -> None:
        """Train Matrix Thinkers (AdamW, warmup + cosine) and save one checkpoint per seed."""
        if codi:  # the console script rewrites --codi before parsing; this is a direct call
            raise AblateError("--codi is handled by the `ablate` entry point; call "
                              "`ablate codi train ...` (ablate.cli.main) instead")
        if variant is not None:
            attention, head = variant_parts(variant)
            given = {"attention": attention, "head": head, **given}
        seeds = parse_seeds(seed) if seed else None
        notices: list[str] = []
        base = config_from_command_line(
            TrainConfig, {**given, **({"seed": seeds[0]} if seeds else {})}, config_file,
            notices)
        seeds = seeds or [base.seed]
        configs = [base.replace(seed=s, out=output_for_seed(base.out, s, len(seeds)))
                   for s in seeds]
        if threads < 0:
            raise AblateError(f"--threads {threads} must be >= 0 (0 keeps torch's default)")
        if threads:
            import torch

            torch.set_num_threads(threads)
        for notice in notices:
            typer.echo(notice, err=True)
        command = command_line(ctx, ["ablate", "train"])
        console = Console(soft_wrap=True)  # log lines stay whole in files
        results = [run_seed(config, resume, console, command) for config in configs]
        for result in results:
            console.print(_summary(result))
