"""``ablate inspect`` and ``ablate convert``: look at a checkpoint; make a research one native.

Both print where each fact the weights cannot give (attention, n_heads, ...) came from,
and refuse (exit 2) when nothing states one, unless --assume-research-defaults is given.

    $ ablate inspect shared/reference/attn3d_multiprobe__small_init --json
    $ ablate convert runs/exp_3d_attn/best.pt checkpoints/attn3d --attention matrix3d --n-heads 4
"""

from __future__ import annotations

import json
import shlex
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ablate.checkpoint import (
    INSPECT_KEYS,
    convert_checkpoint,
    inspect_checkpoint,
    load_checkpoint,
)
from ablate.checkpoint.settings import Setting


class Attention(str, Enum):
    frobenius = "frobenius"
    matrix3d = "matrix3d"


ATTENTION_HELP = ("Attention type, which the weights do not reveal: frobenius (rounds 1, 2, "
                  "byte) or matrix3d (3D attention). Must agree with the checkpoint's own "
                  "config and sidecar files when they state it.")
N_HEADS_HELP = ("Attention heads (not stored in the weights). Must agree with the "
                "checkpoint's own config and sidecar files when they state it.")
ASSUME_HELP = ("Take facts that nothing states from the research script defaults (8 heads "
               "at d=32; 4 at d=16; Frobenius attention except the 3D script's d=16 BPE "
               "models). Reported as assumed; without this flag they are an error.")
JSON_HELP = f"Print one JSON object with keys {', '.join(INSPECT_KEYS)}."
VARIANT_HELP = "Research variant name, e.g. attn3d_multiprobe (sets attention and head)."
TOKENIZER_HELP = "Tokenizer directory (needed for non-byte vocabularies such as GPT-2 BPE)."


def _overrides(attention: Attention | None, n_heads: int | None, variant: str | None,
               tokenizer: Path | None, assume: bool) -> dict[str, Any]:
    return {"attention": attention.value if attention else None, "n_heads": n_heads,
            "variant": variant, "tokenizer": tokenizer, "assume_research_defaults": assume}


def inspect_command(
    path: Annotated[Path, typer.Argument(help="Checkpoint directory or research .pt file.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
    attention: Annotated[Attention | None, typer.Option(help=ATTENTION_HELP)] = None,
    n_heads: Annotated[int | None, typer.Option("--n-heads", help=N_HEADS_HELP)] = None,
    variant: Annotated[str | None, typer.Option(help=VARIANT_HELP)] = None,
    tokenizer: Annotated[Path | None, typer.Option(help=TOKENIZER_HELP)] = None,
    assume_research_defaults: Annotated[bool, typer.Option(
        "--assume-research-defaults", help=ASSUME_HELP)] = False,
    iterations: Annotated[int | None, typer.Option(
        "--iterations", "-T", help="Iterations T to measure (default: the config's).")] = None,
    tokens: Annotated[int, typer.Option(help="Tokens per row of the probe batch.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of random probe ids (no tokenizer).")] = 0,
) -> None:
    """Show a checkpoint's format, variant, config, where each fact the weights cannot
    give came from, parameter count, notes, and the effective rank of its states per
    iteration on a small deterministic batch."""
    overrides = _overrides(attention, n_heads, variant, tokenizer, assume_research_defaults)
    loaded = load_checkpoint(path, overrides=overrides, require_tokenizer=False,
                             overrides_from="flags")
    report = inspect_checkpoint(loaded, n_iterations=iterations, n_tokens=tokens, seed=seed)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    console = Console()
    summary = Table(title="Checkpoint", show_header=False)
    summary.add_column("key", style="bold")
    summary.add_column("value", overflow="fold")
    for key in ("format", "path", "variant"):
        summary.add_row(key, str(report[key]))
    summary.add_row("parameters", f"{report['n_params']:,}")
    summary.add_row("tokenizer", str(report["tokenizer"]))
    for key, value in report["metadata"].items():
        if isinstance(value, (str, int, float, bool)):  # nested blocks are in --json
            summary.add_row(key, str(value))
    console.print(summary)
    config = Table(title="Config", show_header=False)
    config.add_column("key", style="bold")
    config.add_column("value")
    for key, value in report["config"].items():
        config.add_row(key, str(value))
    console.print(config)
    _print_settings(console, report["settings"])
    for note in _other_notes(report["notes"], report["settings"]):
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    batch = report["batch"]
    ranks = Table(title="Effective rank per iteration", min_width=48,
                  caption=f"mean over the positions of a {batch['shape'][0]}x"
                          f"{batch['shape'][1]} {batch['source']} batch")
    ranks.add_column("t", justify="right")
    ranks.add_column("state")
    ranks.add_column("erank", justify="right")
    for t, value in enumerate(report["erank_per_iter"]):
        ranks.add_row(str(t), f"M({t})", f"{value:.4f}")
    console.print(ranks)


def _other_notes(notes: list[str], settings: dict[str, dict[str, Any]]) -> list[str]:
    """The notes that the settings table does not already show."""
    shown = {Setting(**values).describe(name) for name, values in settings.items()}
    return [note for note in notes if note not in shown]


def _print_settings(console: Console, settings: dict[str, dict[str, Any]]) -> None:
    """What the weights do not give, with the place each value came from."""
    table = Table(title="Not in the weights: where each value came from", show_header=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    table.add_column("source", overflow="fold")
    for name, setting in settings.items():
        how = setting["how"]
        source = {"stated": setting["source"], "assumed": f"ASSUMED ({setting['source']})"
                  }.get(how, setting["source"])
        style = "yellow" if how == "assumed" else None
        table.add_row(name, str(setting["value"]), source, style=style)
    console.print(table)


def convert_command(
    source: Annotated[Path, typer.Argument(help="Research .pt file or directory with best.pt.")],
    destination: Annotated[Path, typer.Argument(help="New native checkpoint directory.")],
    attention: Annotated[Attention | None, typer.Option(help=ATTENTION_HELP)] = None,
    n_heads: Annotated[int | None, typer.Option("--n-heads", help=N_HEADS_HELP)] = None,
    variant: Annotated[str | None, typer.Option(help=VARIANT_HELP)] = None,
    tokenizer: Annotated[Path | None, typer.Option(help=TOKENIZER_HELP)] = None,
    assume_research_defaults: Annotated[bool, typer.Option(
        "--assume-research-defaults", help=ASSUME_HELP)] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing checkpoint.")] = False,
) -> None:
    """Convert a research checkpoint to the native format; check that the copy computes
    what was loaded, and say where each fact the weights cannot give came from."""
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in
             (("attention", attention and attention.value), ("n_heads", n_heads),
              ("variant", variant), ("tokenizer", tokenizer)) if value is not None]
    if assume_research_defaults:
        flags.append("--assume-research-defaults")
    command = shlex.join(["ablate", "convert", str(source), str(destination), *flags])
    overrides = _overrides(attention, n_heads, variant, tokenizer, assume_research_defaults)
    result = convert_checkpoint(source, destination, overrides=overrides,
                                metadata={"command": command}, overwrite=overwrite,
                                overrides_from="flags")
    console = Console(soft_wrap=True)  # paths and hashes stay on one line
    settings = result.info.metadata.get("source_settings", {})
    for note in _other_notes(result.info.metadata.get("source_notes", []), settings):
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    B, L = result.verified_shape
    console.print(
        f"converted {result.info.metadata['source']} -> {result.path}\n"
        f"  variant {result.info.variant}, {result.info.n_params:,} parameters, "
        f"sha256 {result.source_sha256}",
        highlight=False,
    )
    for name, setting in settings.items():
        line = Setting(**setting).describe(name)
        console.print(f"  {'[yellow]' + line + '[/yellow]' if name in result.assumed else line}",
                      highlight=False)
    if result.assumed:
        console.print(
            f"[yellow]warning:[/yellow] {' and '.join(result.assumed)} were assumed, not "
            f"stated: the copy reproduces the model ablate built ({B}x{L} batch, "
            f"T={result.n_iterations}), but nothing checked that model against the research run",
            highlight=False,
        )
    else:
        console.print(f"  logits of the copy identical to the loaded file's on a {B}x{L} batch "
                      f"at T={result.n_iterations}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)
    app.command("convert")(convert_command)
