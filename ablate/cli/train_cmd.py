"""``ablate train``: train Matrix Thinkers, one checkpoint directory per seed.

Flags map one to one onto ``ablate.train.TrainConfig``; ``--variant`` picks attention
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
import sys
from dataclasses import fields
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ablate.errors import AblateError
from ablate.train import TrainConfig, TrainProgress, TrainResult, train, variant_parts

DEFAULTS = {spec.name: spec.default for spec in fields(TrainConfig)}


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


def command_line(ctx: typer.Context) -> list[str]:
    """The command as typed when this process is the CLI; called from Python (``main``
    with an argument list), the flags that were given, rebuilt in declaration order."""
    program = sys.argv[0].replace("\\", "/") if sys.argv else ""
    if os.path.basename(program) == "ablate":
        return ["ablate", *sys.argv[1:]]
    if program.endswith("ablate/cli/__main__.py"):
        return ["python", "-m", "ablate.cli", *sys.argv[1:]]
    words = ["ablate", "train"]
    for param in ctx.command.params:
        # Typer bundles its own click, so compare the source by name.
        source = ctx.get_parameter_source(param.name)
        if getattr(source, "name", "") != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        if isinstance(value, bool):
            words.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            for item in value if isinstance(value, list) else [value]:
                words += [param.opts[0], str(item)]
    return words


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
    def train_command(
        ctx: typer.Context,
        variant: str = typer.Option(
            None, "--variant", help="Research variant (sets attention and head)."
        ),
        attention: str = typer.Option(None, "--attention", help="frobenius | matrix3d"),
        head: str = typer.Option(None, "--head", help="multiprobe | collapse"),
        mat_dim: int = typer.Option(DEFAULTS["mat_dim"], "--mat-dim", help="Matrix size d."),
        layers: int = typer.Option(DEFAULTS["n_layers"], "--layers", help="Thinking layers."),
        heads: int = typer.Option(
            DEFAULTS["n_heads"], "--heads", help="Attention heads (divide d)."
        ),
        probes: int = typer.Option(
            DEFAULTS["n_probes"], "--probes", help="MultiProbe probes K (0: d)."
        ),
        iterations: int = typer.Option(
            DEFAULTS["n_iterations"], "--iterations", help="Iterations T."
        ),
        embedding: str = typer.Option(
            DEFAULTS["embedding"], "--embedding", help="outer | rank_r | bigram | pairwise"
        ),
        embedding_rank: int = typer.Option(DEFAULTS["embedding_rank"], "--embedding-rank"),
        max_len: int = typer.Option(
            DEFAULTS["max_len"], "--max-len", help="Positional table size."
        ),
        seq_len: int = typer.Option(
            DEFAULTS["seq_len"], "--seq-len", help="Training window length."
        ),
        steps: int = typer.Option(DEFAULTS["steps"], "--steps"),
        batch_size: int = typer.Option(DEFAULTS["batch_size"], "--batch-size"),
        lr: float = typer.Option(DEFAULTS["lr"], "--lr", help="Peak learning rate."),
        warmup: int = typer.Option(DEFAULTS["warmup"], "--warmup", help="Linear warmup steps."),
        weight_decay: float = typer.Option(DEFAULTS["weight_decay"], "--weight-decay"),
        grad_clip: float = typer.Option(DEFAULTS["grad_clip"], "--grad-clip"),
        dropout: float = typer.Option(DEFAULTS["dropout"], "--dropout"),
        seed: Annotated[
            list[str] | None, typer.Option("--seed", help="Seed(s): repeat or '0,1,2' (default 0).")
        ] = None,
        data: str = typer.Option(
            DEFAULTS["data"], "--data", help="synthetic[:key=value,...] | gsm8k[:PATH] | text:PATH"
        ),
        train_items: int = typer.Option(
            DEFAULTS["train_items"], "--train-items", help="Cap on training documents (0: all)."
        ),
        val_items: int = typer.Option(
            DEFAULTS["val_items"], "--val-items", help="Held-out documents for validation."
        ),
        out: str = typer.Option(
            DEFAULTS["out"], "--out", help="Checkpoint directory; may hold {seed}."
        ),
        eval_every: int = typer.Option(DEFAULTS["eval_every"], "--eval-every"),
        save_every: int = typer.Option(
            DEFAULTS["save_every"], "--save-every", help="Steps between resumable training states."
        ),
        log_every: int = typer.Option(DEFAULTS["log_every"], "--log-every"),
        device: str = typer.Option(
            DEFAULTS["device"], "--device", help="auto | cpu | cuda | cuda:N"
        ),
        threads: int = typer.Option(
            0, "--threads", help="CPU threads for torch (0: torch's default); 1 suits tiny models."
        ),
        resume: bool = typer.Option(
            True, "--resume/--no-resume", help="Continue an interrupted run in --out (default)."
        ),
        codi: bool = typer.Option(
            False, "--codi", help="Train a matrix-CODI model instead: the same as "
            "`ablate codi train` with the flags that follow (see `ablate codi train --help`)."
        ),
    ) -> None:
        """Train Matrix Thinkers (AdamW, warmup + cosine) and save one checkpoint per seed."""
        if codi:  # the console script rewrites --codi before parsing; this is a direct call
            raise AblateError("--codi is handled by the `ablate` entry point; call "
                              "`ablate codi train ...` (ablate.cli.main) instead")
        base_attention, base_head = DEFAULTS["attention"], DEFAULTS["head"]
        if variant is not None:
            base_attention, base_head = variant_parts(variant)
        seeds = parse_seeds(seed or ["0"])
        configs = [
            TrainConfig(
                attention=attention or base_attention,
                head=head or base_head,
                mat_dim=mat_dim,
                n_layers=layers,
                n_heads=heads,
                n_probes=probes,
                n_iterations=iterations,
                embedding=embedding,
                embedding_rank=embedding_rank,
                max_len=max_len,
                dropout=dropout,
                data=data,
                train_items=train_items,
                val_items=val_items,
                seq_len=seq_len,
                steps=steps,
                batch_size=batch_size,
                lr=lr,
                warmup=warmup,
                weight_decay=weight_decay,
                grad_clip=grad_clip,
                seed=s,
                eval_every=eval_every,
                save_every=save_every,
                log_every=log_every,
                device=device,
                out=output_for_seed(out, s, len(seeds)),
            )
            for s in seeds
        ]
        if threads < 0:
            raise AblateError(f"--threads {threads} must be >= 0 (0 keeps torch's default)")
        if threads:
            torch.set_num_threads(threads)
        command = command_line(ctx)
        console = Console(soft_wrap=True)  # log lines stay whole in files
        results = [run_seed(config, resume, console, command) for config in configs]
        for result in results:
            console.print(_summary(result))
