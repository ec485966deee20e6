"""The CODI rank-dynamics study: rank of every latent thought, depth, and causal rank cuts.

For each problem and condition one record (the per-item schema of ``docs/architecture.md``
plus CODI columns): the effective rank (research formula, spec §6.3) and the other rank
metrics of every latent matrix Z_j, depth (calculator annotations, solution lines; NA
when a problem has no annotations: kept, excluded from depth statistics, counted), token
counts, the greedy prediction scored by CODI's rule and the lm-eval filters, and the
teacher-forced log-likelihood of the gold answer. Conditions edit the latents inside the
loop (so an edited thought is what the model reads next): best rank-k (``svd_rank_k``)
or a random rank-k subspace (``random_rank_k``, one Haar subspace per (eval seed, draw,
k)), on every latent (site ``latent``) or on latent j only (site ``latent.j``), for each
number of latents (``n_latents``; 0 is the no-thought baseline).

Records go to a run directory (``ablate.store``: manifest + ``records/<job>.parquet``),
one job per (n_latents, eval seed), so ``ablate.stats`` applies directly: select one
number of latents by ``config_label`` ("<label>-L<n>"; also in column ``n_latents``).

    >>> study = load_study("experiments/codi_rank_dynamics.toml")   # doctest: +SKIP
    >>> result = run_study(study, "runs/codi")                      # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from ablate.codi.evaluation import LatentEdit, Outcome, evaluate_conditions
from ablate.codi.sequences import clean_answer
from ablate.codi.study_config import StudyConfig
from ablate.errors import AblateError
from ablate.evaluation.records import to_frame
from ablate.experiment import JOB_COLUMNS
from ablate.projections import (
    decompose,
    draw_generator,
    random_project,
    random_subspace,
    svd_project,
)
from ablate.rank import spectral_summary
from ablate.store import RunStore
from ablate.tasks import get_task
from ablate.tasks.base import Item

if TYPE_CHECKING:
    from ablate.executors import RunProgress

logger = logging.getLogger(__name__)

# Columns added to the shared record schema, with their pandas dtypes.
CODI_COLUMNS = {
    "model_kind": "string",  # "native" | "research"
    "n_latents": "int64",
    "latent_index": "Int64",  # the edited latent j; <NA> when every latent (or none) is
    "n_question_tokens": "int64",
    "latent_erank": "object",  # n_latents floats: research effective rank of each Z_j
    "latent_erank_mean": "float64",  # their mean; NaN without latents
    "latent_stable_rank": "object",
    "latent_participation_ratio": "object",
    "latent_numerical_rank": "object",
}
# Conditions evaluated together (sharing the question pass); bounds progress granularity.
CONDITIONS_PER_PASS = 8
# records finished, records in the job
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LatentCondition:
    """One cell of the intervention grid; ``target`` None = every latent."""

    intervention: str = "none"  # "none" | "svd_rank_k" | "random_rank_k"
    k: int | None = None
    draw: int | None = None
    target: int | None = None

    @property
    def site(self) -> str:
        if self.intervention == "none":
            return "none"
        return "latent" if self.target is None else f"latent.{self.target}"

    @property
    def label(self) -> str:
        if self.intervention == "none":
            return "none"
        draw = f":draw={self.draw}" if self.draw is not None else ""
        return f"{self.intervention}@{self.site}:k={self.k}{draw}"

    def edit(self, d: int, eval_seed: int) -> LatentEdit | None:
        """The edit applied to each latent Z_j (B, d, d) as it is produced."""
        if self.intervention == "none":
            return None
        assert self.k is not None
        k, target = self.k, self.target
        basis = None
        if self.intervention == "random_rank_k":
            assert self.draw is not None
            basis = random_subspace(d, k, generator=draw_generator(eval_seed, self.draw, k))

        def edit(Z: torch.Tensor, j: int) -> torch.Tensor:
            if target is not None and j != target:
                return Z
            if basis is None:
                return svd_project(decompose(Z), k)
            return random_project(Z, basis)

        return edit


def expand_latent_conditions(config: StudyConfig, n_latents: int, d: int | None,
                             ) -> list[LatentCondition]:
    """"none", then per target (every latent, then each j < n_latents) the SVD cut for each
    k <= d and the random cut for each k < d (k = d keeps everything) and draw."""
    conditions = [LatentCondition()]
    if n_latents == 0 or d is None:
        return conditions
    targets: list[int | None] = []
    for target in config.targets:
        if target == "all":
            targets.append(None)
        elif int(target) < n_latents:
            targets.append(int(target))
    for target in targets:
        for k in (k for k in config.ks if k <= d):
            conditions.append(LatentCondition("svd_rank_k", k, None, target))
            if k < d:
                conditions += [LatentCondition("random_rank_k", k, draw, target)
                               for draw in range(config.random_draws)]
    return conditions


@dataclass(frozen=True)
class StudyJob:
    job_id: str
    n_latents: int
    eval_seed: int


def study_jobs(config: StudyConfig) -> list[StudyJob]:
    digest = config.config_hash()[:8]
    label = config.checkpoint.label
    return [StudyJob(f"{label}-s{config.checkpoint.train_seed}__{config.task.name}-"
                     f"{config.task.split}-codi__L{n}__e{seed}__{digest}", n, seed)
            for n in config.n_latents for seed in config.eval_seeds]


@dataclass(frozen=True)
class StudyResult:
    run_dir: Path
    n_jobs: int
    n_run: int
    n_skipped: int
    n_items: int
    n_depth_unknown: int  # problems without calculator annotations (depth NA)


def load_solver(config: StudyConfig) -> Any:
    """The CODI model the study names (native directory or research .pt file)."""
    spec = config.checkpoint
    device = config.device
    if spec.kind == "native":
        from ablate.codi.saving import load_codi

        return load_codi(spec.path, device=device)
    from ablate.codi.research import load_research_codi

    return load_research_codi(spec.path, tokenizer=spec.tokenizer, base=spec.base,
                              n_head=spec.n_head, device=device)


def load_study_items(config: StudyConfig) -> list[Item]:
    task = get_task(config.task.name, **config.task.options)
    return task.load(config.task.split, path=config.task.path, limit=config.task.limit)


def run_study(config: StudyConfig, run_dir: str | Path, *, progress: RunProgress | None = None,
              experiment_file: str | None = None, threads: int | None = None) -> StudyResult:
    """Run every unfinished job of ``config`` into ``run_dir`` (resumable); ``progress``
    hears of jobs and records as ``ablate.executors.run_experiment`` reports them. Runs
    with ``threads`` torch threads (default: ``ablate.executors.threads.job_threads``)."""
    from ablate.executors.threads import available_cores, job_threads, model_width, torch_threads

    jobs = study_jobs(config)
    solver = load_solver(config)
    items = load_study_items(config)
    unknown = sum(depth_or_na(item) is None for item in items)
    if unknown:
        logger.warning("%d of %d problems have no calculator annotations: depth NA (kept, "
                       "excluded from depth statistics)", unknown, len(items))
    store = RunStore.open(run_dir, config=config.to_dict(), config_hash=config.config_hash(),
                          job_ids=[job.job_id for job in jobs], experiment_file=experiment_file)
    width = model_width(getattr(solver, "thinker", None) or solver)
    with store, torch_threads(job_threads(width, available_cores(), threads)):
        finished = store.finished()
        todo = [job for job in jobs if job.job_id not in finished]
        if progress is not None:
            progress.start(len(jobs), len(jobs) - len(todo))
        for job in todo:
            records = functools.partial(progress.records_done, job) if progress else None
            store.write(job.job_id, run_study_job(config, job, solver, items,
                                                  progress=records))
            if progress is not None:
                progress.job_done(job)
    return StudyResult(Path(run_dir), len(jobs), len(todo), len(jobs) - len(todo), len(items),
                       unknown)


def run_study_job(config: StudyConfig, job: StudyJob, solver: Any, items: Sequence[Item], *,
                  progress: Progress | None = None) -> pd.DataFrame:
    """The records of one job: every condition over every item at ``job.n_latents``.

    This is the job function a generic runner can call (it needs only plain values and
    the loaded model).
    """
    d = solver.mat_dim
    conditions = expand_latent_conditions(config, job.n_latents, d)
    total = len(conditions) * len(items)
    rows: list[dict[str, Any]] = []
    extras: list[dict[str, Any]] = []
    done = 0
    # Conditions go to the model in groups that share one read of each question batch.
    for begin in range(0, len(conditions), CONDITIONS_PER_PASS):
        group = conditions[begin:begin + CONDITIONS_PER_PASS]
        edits = [c.edit(d, job.eval_seed) if d is not None else None for c in group]
        per_edit = evaluate_conditions(solver, items, job.n_latents, edits,
                                       max_new_tokens=config.max_new_tokens,
                                       batch_size=config.batch_size,
                                       max_question_tokens=config.max_question_tokens)
        for condition, outcomes in zip(group, per_edit, strict=True):
            for outcome in outcomes:
                row, extra = _record(config, job, condition, outcome, solver)
                rows.append(row)
                extras.append(extra)
        done += len(group) * len(items)
        if progress is not None:
            progress(done, total)
    frame = to_frame(rows)
    for column, dtype in CODI_COLUMNS.items():
        values = [extra[column] for extra in extras]
        frame[column] = pd.Series(values, dtype=dtype) if dtype != "object" else values
    job_columns = {
        "job_id": job.job_id, "checkpoint": config.checkpoint.path,
        "config_label": f"{config.checkpoint.label}-L{job.n_latents}",
        "train_seed": config.checkpoint.train_seed, "eval_seed": job.eval_seed,
        "task": config.task.name, "split": config.task.split, "mode": "generative",
        "n_iterations": _n_iterations(solver),
    }
    assert tuple(job_columns) == JOB_COLUMNS
    head = pd.DataFrame({name: [value] * len(frame) for name, value in job_columns.items()})
    head = head.astype({name: "string" for name in head if head[name].dtype == object})
    return pd.concat([head, frame.reset_index(drop=True)], axis=1)


def depth_or_na(item: Item) -> int | None:
    """Calculator-annotation depth, None (NA) when the problem has none."""
    return item.depth_annotations if item.depth_annotations else None


def _n_iterations(solver: Any) -> int:
    # Native: the thinker's T; research: one pass of the bottleneck's thinking layer.
    settings = getattr(solver, "settings", None)
    if settings is not None:
        return int(settings.n_iterations)
    return int(getattr(getattr(solver, "bottleneck", None), "thinker", None) is not None)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _record(config: StudyConfig, job: StudyJob, condition: LatentCondition, outcome: Outcome,
            solver: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    item, solution = outcome.item, outcome.solution
    layout = solver.layout
    gold = " " + clean_answer(item)
    prompt = (f"{item.question.strip()}{layout.question_suffix}<bot>"
              f"[{job.n_latents} latents]<eot>{layout.cue}")
    n_tail = 1 + len(solver.tokenizer.encode(layout.cue))
    question_tokens = len(solver.tokenizer.encode(item.question.strip() + layout.question_suffix))
    nats = -solution.answer_loglik
    n_bytes = len(gold.encode("utf-8"))
    row = {
        **{"condition": condition.label, "intervention": condition.intervention,
           "site": condition.site, "k": condition.k, "draw": condition.draw},
        "item_id": item.item_id, "doc_hash": item.doc_hash, "prompt_hash": _hash(prompt),
        "target_hash": _hash(gold), "depth_annotations": depth_or_na(item),
        "depth_lines": item.depth_lines,
        "n_prompt_tokens": solution.n_question_tokens + 1 + job.n_latents + n_tail,
        "n_target_tokens": solution.n_answer_tokens,
        "prompt_truncated": question_tokens - solution.n_question_tokens,
        "answer_loglik": solution.answer_loglik, "solution_nats": nats,
        "solution_bytes": n_bytes, "bits_per_byte": nats / math.log(2) / n_bytes,
        "tf_exact_match": solution.tf_exact_match, "prediction": solution.generation,
        "correct_strict": outcome.lm_eval.correct_strict,
        "correct_flexible": outcome.lm_eval.correct_flexible,
        "correct_numeric": outcome.codi.correct_numeric, "invalid": outcome.codi.invalid,
        "correct": float(outcome.codi.correct_numeric),
        "erank_per_iter": None, "erank_answer_per_iter": None, "erank_head_input": float("nan"),
    }
    extra = {"model_kind": config.checkpoint.kind, "n_latents": job.n_latents,
             "latent_index": condition.target, "n_question_tokens": solution.n_question_tokens,
             **_latent_metrics(solution.latents)}
    return row, extra


def _latent_metrics(latents: torch.Tensor | None) -> dict[str, Any]:
    """Per-latent rank metrics (lists, latent order) and the mean effective rank."""
    if latents is None or latents.shape[0] == 0:
        empty: list = []
        return {"latent_erank": empty, "latent_erank_mean": float("nan"),
                "latent_stable_rank": empty, "latent_participation_ratio": empty,
                "latent_numerical_rank": empty}
    summary = spectral_summary(latents)
    erank = [float(v) for v in summary["effective_rank_research"]]
    return {
        "latent_erank": erank,
        "latent_erank_mean": sum(erank) / len(erank),
        "latent_stable_rank": [float(v) for v in summary["stable_rank"]],
        "latent_participation_ratio": [float(v) for v in summary["participation_ratio"]],
        "latent_numerical_rank": [int(v) for v in summary["numerical_rank"]],
    }


def summarize(records: pd.DataFrame) -> pd.DataFrame:
    """Accuracy, mean answer log-likelihood and mean latent effective rank per
    (n_latents, condition), over items and seeds."""
    if records.empty:
        raise AblateError("no CODI records to summarise; run the study first")
    grouped = records.groupby(["n_latents", "condition"], sort=True)
    return pd.DataFrame({
        "accuracy": grouped["correct"].mean(),
        "answer_loglik": grouped["answer_loglik"].mean(),
        "latent_erank_mean": grouped["latent_erank_mean"].mean(),
        "n_records": grouped.size(),
    }).reset_index()


def records_json(frame: pd.DataFrame) -> str:
    """A compact JSON dump of a summary frame (for the CLI's --json)."""
    return json.dumps(frame.to_dict(orient="records"), indent=2, default=float)
