"""The training loop: AdamW, warmup + cosine, clipping, validation, resumable state.

Spec §7.2: AdamW(betas=(0.9, 0.98), eps=1e-8) over all parameters; the LR multiplier is
step/warmup during warmup (so the first update has LR 0), then a cosine to 0 at the
last step; the gradient norm is clipped; the loss is the mean next-token cross-entropy
of the final-iteration logits only. On CUDA the forward pass runs under bf16 autocast.

Every ``save_every`` steps the run writes ``training_state.pt`` in its output directory
(model, optimizer, scheduler, RNG states, step, curve so far) by write-then-rename. Run
the same config again and training continues from it, ending in bit-identical weights;
data order depends only on (seed, step), so the state needs nothing more. At the end the
model is saved with ``ablate.checkpoint.save_checkpoint`` and the state is removed.

    >>> result = train(TrainConfig(steps=300, out="runs/tiny"))  # doctest: +SKIP
    >>> result.final["bpb"], result.final["rank_per_iter"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ablate.checkpoint import META_FILE, save_checkpoint
from ablate.config import resolve_device
from ablate.errors import AblateError
from ablate.model import MatrixThinker
from ablate.rank import effective_rank
from ablate.tokenizer import ByteTokenizer
from ablate.train.config import TrainConfig
from ablate.train.data import Corpus, TokenWindows, batch_indices, encode_text, load_corpus
from ablate.train.validation import LN2, ValidationSet, build_validation_set, validate

logger = logging.getLogger(__name__)

STATE_FILE = "training_state.pt"
STATE_VERSION = 1


def lr_multiplier(step: int, warmup: int, steps: int) -> float:
    """LR factor for the update that follows ``step`` completed updates (spec §7.2)."""
    if step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainProgress:
    """What a progress callback sees. ``event``: "start", "step", "eval" or "done"."""

    event: str
    step: int
    steps: int
    loss: float | None = None  # mean training loss since the last log, nats/token
    bpb: float | None = None  # that loss in bits per byte of the training text
    lr: float | None = None
    train_rank: float | None = None  # effective rank of M(T) on the last logged batch
    validation: dict | None = None  # the latest validation metrics
    resumed_from: int = 0


@dataclass
class TrainResult:
    """A finished run. ``final``: validation at the last step (``validate`` keys) plus the
    baselines ``unigram_bpb`` and ``majority_answer_accuracy``; ``evals``: every
    validation with its step; ``curve``: the training log."""

    out: str
    config: TrainConfig
    steps_done: int
    final: dict
    evals: list[dict] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    seconds: float = 0.0  # wall-clock time of training and validation
    cpu_seconds: float = 0.0  # CPU time of this process (all threads) for the same
    resumed_from: int = 0
    already_done: bool = False


def training_step(
    model: MatrixThinker,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_iterations: int,
    grad_clip: float,
    keep_state: bool = False,
) -> tuple[float, torch.Tensor | None]:
    """One update on inputs/targets (B, S); returns the loss (nats/token) and, when
    ``keep_state``, the detached final state M(T) (B, S, d, d)."""
    device = x.device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        output = model(x, n_iterations=n_iterations, return_states=keep_state)
    # Only the final iteration is supervised (spec §7.2); float32 for the softmax.
    loss = F.cross_entropy(output.logits.float().flatten(0, 1), y.flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    final_state = output.states[-1].detach() if keep_state else None
    return float(loss.detach()), final_state


def train(
    config: TrainConfig,
    *,
    progress: Callable[[TrainProgress], None] | None = None,
    resume: bool = True,
    command: list[str] | None = None,
) -> TrainResult:
    """Train one model (one seed) as ``config`` says and save it to ``config.out``.

    ``resume``: continue from ``training_state.pt`` in ``config.out`` if present (its
    config must match), or return the finished checkpoint there without retraining;
    False starts over. ``command`` is recorded in the checkpoint metadata.
    """
    report = progress or (lambda _: None)
    out = Path(config.out)
    state_path = out / STATE_FILE
    _prepare_output(out, state_path, resume)
    if resume:
        finished = _finished_run(config, out, state_path)
        if finished is not None:
            report(
                TrainProgress("done", finished.steps_done, config.steps, validation=finished.final)
            )
            return finished

    device = resolve_device(config.device)
    tokenizer = ByteTokenizer(tuple(config.specials))
    corpus = load_corpus(config)
    vocab = tokenizer.vocab_size
    train_stream = encode_text(
        tokenizer, corpus.train_text, f"training text of {config.data}", vocab
    )
    windows = TokenWindows(train_stream, config.seq_len)
    val_data = build_validation_set(
        corpus,
        tokenizer,
        seq_len=config.seq_len,
        max_len=config.max_len,
        train_stream=train_stream,
        vocab_size=vocab,
    )
    # Training bpb is loss/ln2 scaled by the stream's tokens per byte (exact for bytes).
    tokens_per_byte = len(train_stream) / max(1, tokenizer.n_bytes(corpus.train_text))

    torch.manual_seed(config.seed)
    model = MatrixThinker(config.model_config(vocab)).to(device)
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=tuple(config.betas),
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, config.warmup, config.steps)
    )
    step, curve, evals, losses, elapsed = 0, [], [], [], (0.0, 0.0)
    if resume and state_path.exists():
        step, curve, evals, losses, elapsed = _load_state(
            state_path, config, model, optimizer, scheduler, device
        )
        logger.info("resuming %s from step %d", out, step)
    resumed_from = step
    report(TrainProgress("start", step, config.steps, resumed_from=resumed_from))

    started = time.perf_counter() - elapsed[0]
    cpu_started = time.process_time() - elapsed[1]
    while step < config.steps:
        x, y = windows.batch(batch_indices(len(windows), config.batch_size, step, config.seed))
        x, y = x.to(device), y.to(device)
        log_now = (step + 1) % config.log_every == 0 or step + 1 == config.steps
        lr = optimizer.param_groups[0]["lr"]
        loss, final_state = training_step(
            model,
            optimizer,
            scheduler,
            x,
            y,
            n_iterations=config.n_iterations,
            grad_clip=config.grad_clip,
            keep_state=log_now,
        )
        step += 1
        losses.append(loss)
        event = TrainProgress("step", step, config.steps, lr=lr, resumed_from=resumed_from)
        if log_now:
            assert final_state is not None
            rank = float(effective_rank(final_state.float()).mean())
            mean_loss = sum(losses) / len(losses)
            losses.clear()
            curve.append(
                {
                    "step": step,
                    "loss": mean_loss,
                    "bpb": mean_loss / LN2 * tokens_per_byte,
                    "lr": lr,
                    "train_rank": rank,
                    "seconds": time.perf_counter() - started,
                }
            )
            event.loss, event.bpb, event.train_rank = mean_loss, curve[-1]["bpb"], rank
        del final_state
        if step % config.eval_every == 0 or step == config.steps:
            metrics = validate(
                model, val_data, n_iterations=config.n_iterations, batch_size=config.batch_size
            )
            evals.append({"step": step, **metrics})
            event.event, event.validation = "eval", evals[-1]
        if step % config.save_every == 0 and step < config.steps:
            _save_state(
                state_path,
                config,
                model,
                optimizer,
                scheduler,
                step,
                curve,
                evals,
                losses,
                (time.perf_counter() - started, time.process_time() - cpu_started),
                device,
            )
        report(event)

    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    final = {
        **evals[-1],
        "unigram_bpb": val_data.unigram_bpb,
        "majority_answer_accuracy": val_data.majority_answer_accuracy,
    }
    result = TrainResult(
        str(out), config, step, final, evals, curve, seconds, cpu_seconds, resumed_from
    )
    _write_checkpoint(
        model, tokenizer, out, result, command, corpus_summary(corpus, val_data, windows)
    )
    report(TrainProgress("done", step, config.steps, validation=final, resumed_from=resumed_from))
    return result


def corpus_summary(corpus: Corpus, val_data: ValidationSet, windows: TokenWindows) -> dict:
    return {
        "source": corpus.source,
        "train_documents": corpus.n_train_documents,
        "train_tokens": len(windows.stream),
        "train_windows": len(windows),
        "val_documents": corpus.n_val_documents,
        "val_bytes": val_data.n_bytes,
        "answer_items": len(val_data.answers),
        "answer_items_too_long": val_data.n_answers_too_long,
    }


# -- resumable state ----------------------------------------------------------------
def _save_state(
    path: Path,
    config: TrainConfig,
    model: MatrixThinker,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    curve: list[dict],
    evals: list[dict],
    losses: list[float],
    elapsed: tuple[float, float],
    device: torch.device,
) -> None:
    state = {
        "version": STATE_VERSION,
        "config": config.to_dict(),
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "curve": curve,
        "evals": evals,
        "losses": losses,  # step losses since the last curve entry
        "elapsed": list(elapsed),  # wall and CPU seconds so far
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)  # a crash mid-write leaves the previous state intact


def _load_state(
    path: Path,
    config: TrainConfig,
    model: MatrixThinker,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> tuple[int, list[dict], list[dict], list[float], tuple[float, float]]:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # any unreadable file: say which and how to recover
        raise AblateError(
            f"training state {path} is unreadable ({type(err).__name__}); delete it or pass "
            "--no-resume to start over"
        ) from err
    if state.get("version") != STATE_VERSION:
        raise AblateError(
            f"training state {path} has version {state.get('version')!r}; "
            f"expected {STATE_VERSION}; pass --no-resume to start over"
        )
    saved = TrainConfig.from_dict(state["config"], str(path))
    changed = config.differences(saved)
    if changed:
        raise AblateError(
            f"training state {path} was made with other settings ({'; '.join(changed)}); "
            "rerun with the same options, or pass --no-resume to start over"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"].cpu())
    if device.type == "cuda" and state["rng_cuda"] is not None:
        torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
    return (
        int(state["step"]),
        list(state["curve"]),
        list(state["evals"]),
        list(state["losses"]),
        (float(state["elapsed"][0]), float(state["elapsed"][1])),
    )


# -- the output directory and the finished checkpoint --------------------------------
def _parked_state(out: Path) -> Path:
    """Where the state waits while the checkpoint is written: ``save_checkpoint`` only
    replaces a directory that is empty or already a checkpoint."""
    return out.with_name(f".{out.name}.{STATE_FILE}")


def _prepare_output(out: Path, state_path: Path, resume: bool) -> None:
    """Refuse directories a save would refuse, before any training; recover a parked state."""
    parked = _parked_state(out)
    if resume and parked.exists() and not state_path.exists():
        out.mkdir(parents=True, exist_ok=True)
        os.replace(parked, state_path)  # a run stopped while saving its checkpoint
    if not resume:
        for leftover in (state_path, parked):
            if leftover.exists():
                leftover.unlink()
    if not out.is_dir():
        return
    others = sorted(
        p.name for p in out.iterdir() if p.name not in (STATE_FILE, STATE_FILE + ".partial")
    )
    if others and not (out / META_FILE).is_file():
        raise AblateError(
            f"output directory {out} holds {', '.join(others[:4])} and is not an ablate "
            "checkpoint; choose another --out or empty it"
        )


def _write_checkpoint(
    model: MatrixThinker,
    tokenizer: ByteTokenizer,
    out: Path,
    result: TrainResult,
    command: list[str] | None,
    data: dict,
) -> None:
    config = result.config
    metadata = {
        "command": shlex.join(command if command is not None else sys.argv),
        "seed": config.seed,
        "data": config.data,
        "steps": result.steps_done,
        "metrics": result.final,
        "rank_trajectory": result.final["rank_per_iter"],
        "training": {
            "config": config.to_dict(),
            "data": data,
            "seconds": result.seconds,
            "cpu_seconds": result.cpu_seconds,
            "resumed_from": result.resumed_from,
            "evals": result.evals,
            "training_curve": result.curve,
        },
    }
    state_path = out / STATE_FILE
    parked = _parked_state(out)
    if state_path.exists():
        os.replace(state_path, parked)
    model.cpu().eval()
    save_checkpoint(model, tokenizer, out, metadata=metadata)
    if parked.exists():
        parked.unlink()


def _finished_run(config: TrainConfig, out: Path, state_path: Path) -> TrainResult | None:
    """The result recorded in a finished checkpoint at ``out`` made by this config."""
    meta_file = out / META_FILE
    if state_path.exists() or not meta_file.is_file():
        return None
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
        training = metadata["training"]
        saved = TrainConfig.from_dict(training["config"], str(meta_file))
    except (ValueError, KeyError, TypeError, AblateError) as err:
        raise AblateError(
            f"{out} holds a checkpoint that was not made by ablate train ({meta_file} has no "
            "readable 'training' record); choose another --out or pass --no-resume to overwrite it"
        ) from err
    changed = config.differences(saved)
    if changed:
        raise AblateError(
            f"{out} already holds a model trained with other settings ({'; '.join(changed)}); "
            "choose another --out or pass --no-resume to overwrite it"
        )
    return TrainResult(
        str(out),
        config,
        int(metadata["steps"]),
        metadata["metrics"],
        training["evals"],
        training["training_curve"],
        float(training["seconds"]),
        float(training["cpu_seconds"]),
        int(training["resumed_from"]),
        already_done=True,
    )
