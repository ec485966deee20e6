"""Checking an experiment before running it: every check a run makes before its first job
(checkpoints load, sites and k fit each model, items load and encode), without a model run.

    >>> summary = check_experiment(experiment)       # doctest: +SKIP
    >>> summary.n_jobs, summary.n_evaluations          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ablate.errors import AblateError, unknown_name_error
from ablate.executors.jobs import (
    _canonical,
    _checkpoint,
    _codi_model,
    _few_shot_source,
    _load_items,
    _task,
    codi_conditions,
)
from ablate.experiment import CODI, Experiment, TaskSpec
from ablate.grid import expand_jobs


@dataclass
class CheckSummary:
    """What ``check_experiment`` found; ``checkpoints`` is empty for a structural check."""

    n_conditions: int
    conditions: list[str]
    n_jobs: int | None = None
    n_evaluations: int | None = None  # item x condition evaluations over all jobs
    items: list[tuple[str, int]] = field(default_factory=list)  # ("task/split", items per job)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # CODI: conditions per job at each number of latents (those whose sites fire)
    per_latents: dict[int, int] = field(default_factory=dict)


def check_experiment(experiment: Experiment, *, checkpoints: bool = True) -> CheckSummary:
    """Every check a run makes before its first job, without running a model.

    Structural (``checkpoints=False``): the file parsed, tasks and their options exist,
    conditions expand. Full (a resolved experiment): each checkpoint loads, its label
    agrees with its head, every site fires and every k <= d at each T; each task's items
    load (non-empty) and encode with each checkpoint's tokenizer and fit its max_len. A
    CODI experiment: each model loads, every k <= d, items load and encode (and fit a
    research model's positions at the largest number of latents).
    """
    from ablate.interventions import validate_conditions

    conditions = validate_conditions(list(experiment.interventions))
    for spec in experiment.tasks:
        task = _task(spec)
        if spec.path is None and spec.split not in getattr(task, "splits", (spec.split,)):
            raise unknown_name_error(f"{spec.name} split", spec.split, task.splits)
    summary = CheckSummary(n_conditions=len(conditions), conditions=[c.label for c in conditions])
    if not checkpoints:
        return summary
    summary.n_jobs = len(expand_jobs(experiment))
    if experiment.model == CODI:
        return _check_codi(experiment, summary)
    jobs_per_task = summary.n_jobs // len(experiment.tasks)
    summary.n_evaluations = 0
    loaded_items = []
    for spec in experiment.tasks:
        items = _task_items(experiment, spec)
        if spec.few_shot:
            pool = _load_items(_canonical(vars(_few_shot_source(spec))))
            if len(pool) <= spec.few_shot:
                raise AblateError(f"task '{spec.name}': few_shot = {spec.few_shot} needs more "
                                  f"than {len(pool)} train items; lower few_shot")
        loaded_items.append((spec, items))
        summary.items.append((f"{spec.name}/{spec.split}", len(items)))
        summary.n_evaluations += jobs_per_task * len(items) * len(conditions)
    checked: list[tuple[Any, int, int]] = []
    for entry in experiment.checkpoints:
        facts = _check_checkpoint(experiment, entry, summary)
        summary.checkpoints.append(facts)
        loaded = _checkpoint(entry.path, entry.overrides)
        tokenizer, window = loaded.tokenizer, trained_window(loaded.info.metadata)
        key = (tokenizer, facts["vocab_size"], facts["max_len"], window)
        if key not in checked:
            for spec, items in loaded_items:
                lengths = _check_encodes(tokenizer, spec, items, facts, entry.path)
                beyond = sum(n > window for n in lengths) if window is not None else 0
                if beyond:
                    summary.notes.append(
                        f"{beyond} of {len(items)} {spec.name}/{spec.split} items are longer "
                        f"than the {window}-token windows the checkpoints were trained on "
                        f"(e.g. {entry.path}; items up to {max(lengths)} tokens): positions "
                        f"past {window} were never trained, so those items are out of "
                        "distribution")
            checked.append(key)
    return summary


def _task_items(experiment: Experiment, spec: TaskSpec) -> list[Any]:
    """The items a task entry loads; none is an error."""
    items = _load_items(_canonical(vars(spec)))
    if not items:
        raise AblateError(f"{experiment.source}: task '{spec.name}' split '{spec.split}' "
                          f"loaded no items (path {spec.path}); check the path and split")
    return items


def trained_window(metadata: dict[str, Any]) -> int | None:
    """The training window (tokens) an ``ablate train`` checkpoint recorded, else None."""
    config = (metadata.get("training") or {}).get("config") or {}
    window = config.get("seq_len")
    return int(window) if isinstance(window, int) else None


def _check_checkpoint(experiment: Experiment, entry: Any, summary: CheckSummary) -> dict:
    from ablate.interventions import validate_conditions
    from ablate.model.config import HEADS

    loaded = _checkpoint(entry.path, entry.overrides)
    config = loaded.model.config
    d, n_layers = config.mat_dim, config.n_layers
    assumed = [line for name, line in zip(loaded.info.settings, loaded.info.describe_settings(),
                                          strict=True) if name in loaded.info.assumed]
    if assumed:
        summary.notes.append(f"checkpoint {entry.path}: {'; '.join(assumed)}")
    if entry.label in HEADS and entry.label != config.head:
        raise AblateError(
            f"{experiment.source}: checkpoint {entry.path} is labelled '{entry.label}' but "
            f"has a {config.head} head; fix the label or the path"
        )
    for n_iterations in experiment.iterations:
        try:
            conditions = validate_conditions(list(experiment.interventions), d=d,
                                             n_layers=n_layers, n_iterations=n_iterations)
        except AblateError as err:
            raise AblateError(f"{experiment.source}: checkpoint {entry.path}: {err}") from None
    _refuse_k_above_d(experiment, conditions, entry.path, d)
    for condition in conditions:
        if condition.identity and condition.interventions:
            note = f"'{condition.label}' is the identity at d={d}"
            if note not in summary.notes:
                summary.notes.append(note)
    return {"path": entry.path, "label": entry.label, "train_seed": entry.train_seed,
            "d": d, "n_layers": n_layers, "head": config.head, "attention": config.attention,
            "vocab_size": config.vocab_size, "max_len": config.max_len,
            "shape": f"d={d}, {n_layers} layers"}


def _refuse_k_above_d(experiment: Experiment, conditions: list[Any], path: str,
                      d: int) -> None:
    for condition in conditions:
        too_big = [p.k for p in condition.interventions if p.k is not None and p.k > d]
        if too_big:
            raise AblateError(
                f"{experiment.source}: condition '{condition.label}' has k={too_big[0]} but "
                f"checkpoint {path} has d={d}; use k <= {d} (k = d keeps the states), or "
                "keep_k = \"<= d\" to leave larger k out")


def _check_codi(experiment: Experiment, summary: CheckSummary) -> CheckSummary:
    """The full check of a CODI experiment (``check_experiment``)."""
    from ablate.codi.evaluation import MAX_NEW_TOKENS, encode_items
    from ablate.codi.loading import model_kind
    from ablate.codi.records import latent_conditions
    from ablate.grid import Job

    loaded = []
    for spec in experiment.tasks:
        items = _task_items(experiment, spec)
        loaded.append((spec, items))
        summary.items.append((f"{spec.name}/{spec.split}", len(items)))
        unknown = sum(not item.depth_annotations for item in items)
        if unknown:
            summary.notes.append(f"{unknown} of {len(items)} {spec.name}/{spec.split} problems "
                                 "have no calculator annotations: depth NA (kept, excluded "
                                 "from depth statistics)")
    jobs = expand_jobs(experiment)
    counts: dict[tuple[str, int], int] = {}  # (checkpoint, n_latents) -> conditions per job
    for entry in experiment.checkpoints:
        model = _codi_model(entry.path, entry.overrides, experiment.device)
        d = model.mat_dim
        kind = model_kind(model)
        summary.checkpoints.append({"path": entry.path, "label": entry.label,
                                    "train_seed": entry.train_seed, "d": d,
                                    "shape": f"{kind} CODI, d={d}"})
        probe = Job("check", entry, experiment.tasks[0], None, 0, experiment.interventions,
                    experiment.batch_size, experiment.device)
        try:
            conditions = codi_conditions(probe, d)
        except AblateError as err:
            raise AblateError(f"{experiment.source}: checkpoint {entry.path}: {err}") from None
        if d is None and len(conditions) > 1:
            summary.notes.append(f"checkpoint {entry.path} has no matrix thoughts (the "
                                 "vanilla feedback): its jobs run the unablated condition only")
        if d is not None:
            _refuse_k_above_d(experiment, conditions, entry.path, d)
        for n in experiment.n_latents:
            counts[entry.path, n] = len(latent_conditions(conditions, n, d))
            summary.per_latents.setdefault(n, counts[entry.path, n])
        for spec, items in loaded:
            try:
                examples = encode_items(model, items, max_question_tokens=spec.max_question_tokens)
                if kind == "research":
                    model.check_positions(examples, max(experiment.n_latents),
                                          spec.max_new_tokens or MAX_NEW_TOKENS)
            except AblateError as err:
                raise AblateError(f"checkpoint {entry.path}: {err}") from None
    n_items = {_canonical(vars(spec)): len(items) for spec, items in loaded}
    summary.n_evaluations = sum(n_items[_canonical(vars(job.task))]
                                * counts[job.checkpoint.path, job.n_latents]
                                for job in jobs if job.n_latents is not None)
    return summary


def _check_encodes(tokenizer: Any, spec: TaskSpec, items: list[Any], facts: dict,
                   checkpoint: str) -> list[int]:
    """Raise unless every item encodes (and, teacher-forced, fits max_len); returns the
    teacher-forced sequence lengths in tokens (none in generative mode)."""
    from ablate.evaluation.teacher_forced import encode_forced
    from ablate.tasks.prompts import teacher_forced_example
    from ablate.tokenizer import check_encodable

    task = _task(spec)
    try:
        for item in items:
            example = teacher_forced_example(item, task.text_format)
            check_encodable(tokenizer, example.prompt + example.target,
                            f"{spec.name}[{spec.split}] item {item.item_id}",
                            vocab_size=facts["vocab_size"])
        if spec.mode != "teacher_forced":
            return []
        examples = encode_forced(tokenizer, items, task.text_format, facts["max_len"])
    except AblateError as err:
        raise AblateError(f"checkpoint {checkpoint}: {err}") from None
    return [len(e.prompt_ids) + len(e.target_ids) for e in examples]
