"""``ablate codi``: train, evaluate, study and inspect matrix-CODI models.

    $ ablate codi train --steps 400 --time-limit 300 --out checkpoints/codi-synthetic
    $ ablate codi eval checkpoints/codi-synthetic --limit 200
    $ ablate codi eval best_run_b_matrix.pt --kind research --tokenizer /models/gpt2
    $ ablate codi study experiments/codi_rank_dynamics.toml --out runs/codi   # = ablate run
    $ ablate codi inspect checkpoints/codi-synthetic

``codi eval`` and ``codi study`` take their torch threads from the thread policy of
``ablate.executors.threads`` (the cores other processes leave idle) unless ``--threads N``;
``codi train`` defaults to one thread, so that a checkpoint rebuilds bit for bit.
"""

from __future__ import annotations

import json
import shlex
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ablate.cli.options import command_line, config_from_command_line, config_options, key_values
from ablate.cli.run_cmd import run
from ablate.codi.train_config import CodiTrainConfig
from ablate.errors import AblateError

codi_app = typer.Typer(no_args_is_help=True,
                       help="Matrix-CODI: latent reasoning with d×d thoughts.")
console = Console(soft_wrap=True)  # long paths stay on one line (greppable logs)
TaskOptions = Annotated[list[str] | None,
                        typer.Option("--task-option", help="Task option key=value, repeatable.")]


def _threads(threads: int | None, width: int | None = None) -> None:
    """--threads N; None: the thread policy's choice (ablate.executors.threads) for a
    model whose widest matrix is ``width``."""
    if threads is not None and threads < 0:
        raise AblateError(f"--threads {threads} must be >= 0 (0 keeps torch's default)")
    if threads != 0:
        import torch

        from ablate.executors.threads import available_cores, job_threads

        torch.set_num_threads(threads or job_threads(available_cores(), width=width))


def _load(checkpoint: str, kind: str | None, tokenizer: str | None, base: str | None,
          n_head: int | None, device: str) -> Any:
    from ablate.codi.loading import load_codi_model

    return load_codi_model(checkpoint, kind=kind, tokenizer=tokenizer, base=base,
                           n_heads=n_head, device=device)


KIND_HELP = "native | research (default: from the path: a directory or a .pt file)"


@codi_app.command("train")
@config_options(CodiTrainConfig)
def train_command(
    ctx: typer.Context,
    given: dict,
    config_file: str = typer.Option(
        None, "--config", help="TOML file of CODI train config keys; flags override it."),
    out: str = typer.Option(..., "--out", help="Checkpoint directory to write."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads (0: torch default)."),
) -> None:
    """Train a native matrix-CODI model from scratch and save it with its metrics."""
    from ablate.codi.saving import save_codi
    from ablate.codi.training import train_codi

    _threads(threads)
    notices: list[str] = []
    config = config_from_command_line(CodiTrainConfig, given, config_file, notices)
    for notice in notices:
        typer.echo(notice, err=True)
    with console.status("training") as status:
        result = train_codi(config, progress=lambda step, row: status.update(
            f"step {step}  loss {row['total']:.3f}  (teacher {row['teacher']:.3f}, "
            f"student {row['student']:.3f}, distill {row['distill']:.3f})"))
    command = shlex.join(command_line(ctx, ["ablate", "codi", "train"]))
    save_codi(result.codi, out, metadata={"command": command, "seed": config.seed,
                                          "data": config.task, "steps": result.metrics["steps"],
                                          "metrics": result.metrics,
                                          "train_config": config.to_dict()})
    metrics = result.metrics
    console.print(f"saved {out}: {metrics['steps']} steps in {metrics['train_seconds']} s; "
                  f"accuracy {metrics['accuracy']:.3f} on {metrics['eval_items']} "
                  f"{metrics['eval_split']} items vs chance {metrics['chance']:.3f} "
                  f"(always '{metrics['chance_answer']}'); best constant "
                  f"{metrics['best_constant']:.3f}")
    console.print(f"accuracy by depth: {metrics['accuracy_by_depth']}")


@codi_app.command("eval")
def eval_command(
    checkpoint: str = typer.Argument(..., help="Native directory or research .pt file."),
    kind: str = typer.Option(None, "--kind", help=KIND_HELP),
    tokenizer: str = typer.Option(None, "--tokenizer", help="GPT-2 tokenizer dir (research)."),
    base: str = typer.Option(None, "--base", help="Local GPT-2 directory (research)."),
    n_head: int = typer.Option(None, "--n-head", help="GPT-2 heads if not inferable."),
    task: str = typer.Option(
        None, "--task", help="Default: the task the checkpoint was trained on (native), "
        "else synthetic."),
    task_option: TaskOptions = None,
    split: str = typer.Option("test", "--split"),
    data_path: str = typer.Option(None, "--data-path"),
    limit: int = typer.Option(200, "--limit"),
    latents: int = typer.Option(None, "--latents", help="Default: the checkpoint's."),
    batch_size: int = typer.Option(32, "--batch-size"),
    max_question_tokens: int = typer.Option(
        None, "--max-question-tokens", help="Keep the last N question tokens (byte models)."),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    threads: int = typer.Option(
        None, "--threads", help="torch CPU threads (default: the cores other processes "
        "leave idle; 0: torch's default)."),
) -> None:
    """Accuracy (CODI rule), chance baseline and latent effective ranks on a task split."""
    from ablate.codi.evaluation import (
        accuracy,
        best_constant,
        evaluate_items,
        most_frequent_answer,
    )
    from ablate.executors.threads import model_width
    from ablate.rank import effective_rank
    from ablate.tasks import get_task

    solver = _load(checkpoint, kind, tokenizer, base, n_head, device)
    _threads(threads, model_width(getattr(solver, "thinker", None) or solver))
    native = not hasattr(solver, "gpt2")
    options = key_values(task_option or [], "--task-option")
    if task is None:  # the training distribution, with --task-option on top
        trained = _trained_task(checkpoint) if native else None
        task, options = (trained[0], {**trained[1], **options}) if trained else \
            ("synthetic", options)
    n_latents = latents if latents is not None else (
        solver.settings.n_latents if hasattr(solver, "settings") else solver.n_latents)
    source = get_task(task, **options)
    items = source.load(split, path=data_path, limit=limit)
    outcomes = evaluate_items(solver, items, n_latents, task=source, batch_size=batch_size,
                              max_question_tokens=max_question_tokens)
    report: dict[str, Any] = {"checkpoint": checkpoint, "task": task, "task_options": options,
                              "split": split,
                              "n_items": len(items), "n_latents": n_latents,
                              "accuracy": accuracy(outcomes)}
    report["best_constant_answer"], report["best_constant"] = best_constant(items)
    try:
        train = source.load("train", path=data_path, limit=5000)
        report["chance_answer"], report["chance"] = most_frequent_answer(train, items)
    except AblateError as err:
        report["chance"] = None
        report["chance_note"] = str(err)
    latents_seen = [o.solution.latents for o in outcomes if o.solution.latents is not None]
    if latents_seen and latents_seen[0].shape[0]:
        import torch

        erank = effective_rank(torch.stack(latents_seen), research=True)  # (N, n_latents)
        report["latent_erank_mean"] = [round(float(v), 4) for v in erank.mean(0)]
    if as_json:
        console.print_json(json.dumps(report))
        return
    table = Table(title=f"CODI eval: {checkpoint}")
    table.add_column("key")
    table.add_column("value")
    for key, value in report.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)


def _trained_task(checkpoint: str) -> tuple[str, dict[str, Any]] | None:
    """(task, task options) a native CODI checkpoint was trained on, from its metadata."""
    from ablate.checkpoint import load_checkpoint

    config = load_checkpoint(checkpoint).info.metadata.get("train_config") or {}
    if "task" not in config:
        return None
    return str(config["task"]), dict(config.get("task_options") or {})


@codi_app.command("inspect")
def inspect_command(
    checkpoint: str = typer.Argument(...),
    kind: str = typer.Option(None, "--kind", help=KIND_HELP),
    tokenizer: str = typer.Option(None, "--tokenizer"),
    base: str = typer.Option(None, "--base"),
    n_head: int = typer.Option(None, "--n-head"),
) -> None:
    """What a CODI checkpoint holds: settings, sizes, special tokens, stored metrics."""
    from ablate.codi.loading import model_kind

    solver = _load(checkpoint, kind, tokenizer, base, n_head, "cpu")
    kind = model_kind(solver)
    facts: dict[str, Any] = {"kind": kind, "mat_dim": solver.mat_dim,
                             "parameters": sum(p.numel() for p in solver.parameters())}
    if kind == "native":
        from ablate.checkpoint import load_checkpoint

        facts["settings"] = solver.settings.to_json()
        facts["thinker"] = {k: getattr(solver.thinker.config, k) for k in
                            ("mat_dim", "n_layers", "n_heads", "n_probes", "vocab_size",
                             "max_len", "specials")}
        info = load_checkpoint(checkpoint).info
        facts["metrics"] = info.metadata.get("metrics")
        facts["command"] = info.metadata.get("command")
    else:
        facts["gpt2"] = {k: getattr(solver.gpt2.config, k) for k in
                         ("n_layer", "n_embd", "n_head", "vocab_size", "n_positions")}
        facts["feedback"] = ("matrix bottleneck, readout "
                             f"{solver.bottleneck.readout_kind}" if solver.mat_dim
                             else "vanilla LayerNorm")
        facts["n_latents"] = solver.n_latents
    console.print_json(json.dumps(facts, default=str))


# One door: a CODI study is an experiment of CODI checkpoints, run by `ablate run`.
codi_app.command("study", help="Run a CODI experiment or study file: `ablate run` under "
                               "another name (the same options).")(run)


def register(app: typer.Typer) -> None:
    app.add_typer(codi_app, name="codi")
