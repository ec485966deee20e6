"""CODI study files (``kind = "codi_study"``, the format before CODI was a model kind of
an experiment), translated into experiment tables on load.

A study file holds one checkpoint and one task and a study grid::

    version = 1
    kind = "codi_study"
    name = "codi-rank-dynamics"
    [checkpoint]   path, kind ("native" | "research"), label, train_seed;
                   research only: tokenizer, base (local GPT-2 directories), n_head
    [task]         name, split, path, limit, options (the task's own settings)
    [study]        n_latents, ks, targets ("all" and/or latent indices), random_draws,
                   eval_seeds, max_new_tokens, batch_size, max_question_tokens, device

``study_experiment`` writes the same grid as an experiment table: the checkpoint with
``model = "codi"``, a generative task, ``n_latents``, and per target and k an
``svd_rank_k`` table (``keep_k = "<= d"``) and a ``random_rank_k`` table with
``random_draws`` draws (``keep_k = "< d"``), at site ``latent`` ("all") or ``latent.j``:
the study's conditions in its order (SVD for k <= d, random for k < d, nothing for
k > d; a target j only where j < n_latents). The translated experiment keeps the study's
config hash and job ids (``study_hash``), so its records, run directory and job files are
the ones the study runner wrote. Plain data, no torch.

    >>> study = read_study({"version": 1, "kind": "codi_study",
    ...                     "checkpoint": {"path": "/ckpt/codi"}}, "study.toml")
    >>> study["ks"], study_experiment(study)["n_latents"]
    ([1, 2, 4, 8, 16], [6])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ablate.config import Table, check_device_name, config_hash
from ablate.errors import AblateError

STUDY_KIND = "codi_study"
STUDY_VERSION = 1
UNHASHED = ("device", "batch_size")
CHECKPOINT_KINDS = ("native", "research")
_CHECKPOINT_KEYS = ("path", "kind", "label", "train_seed", "tokenizer", "base", "n_head")
_TASK_KEYS = ("name", "split", "path", "limit", "options")
# [study] keys with their defaults, in the order the study runner hashed them.
_STUDY_DEFAULTS: dict[str, Any] = {
    "n_latents": [6], "ks": [1, 2, 4, 8, 16], "targets": ["all"], "random_draws": 1,
    "eval_seeds": [0], "max_new_tokens": 16, "batch_size": 32, "max_question_tokens": None,
    "device": "cpu"}
_LISTS = ("n_latents", "ks", "targets", "eval_seeds")


def is_study(data: Mapping[str, Any]) -> bool:
    """Whether parsed TOML ``data`` is a CODI study file: it has a ``kind`` (experiment
    files have none), or a ``[checkpoint]`` table and no ``[[checkpoints]]`` (``ablate codi
    study`` read study files without a kind)."""
    return "kind" in data or ("checkpoint" in data and "checkpoints" not in data)


def read_study(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The study as the study runner hashed it: every key with its default filled in,
    None values dropped, in the runner's key order; paths as written. Unknown keys and
    values out of range are one-line errors naming ``source``."""
    top = Table(data, "", source, ("version", "kind", "name", "checkpoint", "task", "study"))
    version = top.get("version", int)
    if version != STUDY_VERSION:
        raise top.fail("version", f"is {version}; CODI study files are version {STUDY_VERSION}")
    if top.get("kind", str, STUDY_KIND) != STUDY_KIND:
        raise top.fail("kind", f"is {data['kind']!r}; a CODI study file has kind = "
                               f"\"{STUDY_KIND}\"")
    if "checkpoint" not in data:
        raise AblateError(f"{source}: missing [checkpoint] table with at least path = ...")
    c = Table(data["checkpoint"], "[checkpoint]", source, _CHECKPOINT_KEYS)
    kind = c.get("kind", str, "native")
    if kind not in CHECKPOINT_KINDS:
        raise c.fail("kind", f"is {kind!r}; use one of {', '.join(CHECKPOINT_KINDS)}")
    checkpoint = {"path": c.get("path", str), "kind": kind, "label": c.get("label", str, "codi"),
                  "train_seed": c.get("train_seed", int, 0),
                  "tokenizer": c.get("tokenizer", str, None), "base": c.get("base", str, None),
                  "n_head": c.get("n_head", int, None, min_value=1)}
    t = Table(data.get("task", {}), "[task]", source, _TASK_KEYS)
    task = {"name": t.get("name", str, "synthetic"), "split": t.get("split", str, "test"),
            "path": t.get("path", str, None), "limit": t.get("limit", int, None, min_value=0),
            "options": dict(t.get("options", dict, {}))}
    s = Table(data.get("study", {}), "[study]", source, tuple(_STUDY_DEFAULTS))
    study = {key: s.data.get(key, default) for key, default in _STUDY_DEFAULTS.items()}
    for key in _LISTS:
        if not isinstance(study[key], list):
            study[key] = [study[key]]
    _check_study(study, s)
    return _plain({"checkpoint": checkpoint, "task": task,
                   "name": top.get("name", str, "codi-rank-dynamics"), **study,
                   "version": version})


def _check_study(study: dict[str, Any], table: Table) -> None:
    def integers(key: str, minimum: int) -> None:
        values = study[key]
        if any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
            raise table.fail(key, f"= {values} must hold integers >= {minimum}")

    integers("n_latents", 0)
    integers("eval_seeds", 0)
    integers("ks", 1)
    if not study["n_latents"] or not study["eval_seeds"]:
        raise table.fail("n_latents", "and eval_seeds need at least one value")
    for target in study["targets"]:
        if target != "all" and (isinstance(target, bool) or not isinstance(target, int)
                                or target < 0):
            raise table.fail("targets", f"holds {target!r}; use 'all' or a latent index >= 0")
    for key, minimum in (("random_draws", 0), ("max_new_tokens", 1), ("batch_size", 1)):
        table.get(key, int, _STUDY_DEFAULTS[key], min_value=minimum)
    table.get("max_question_tokens", int, None, min_value=1)
    try:
        check_device_name(study["device"])
    except AblateError as err:
        raise AblateError(f"{table.source}: [study]: {err}") from None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def resolve_study(study: Mapping[str, Any], base_dir: Path, limit: int | None) -> dict[str, Any]:
    """The study as the runner resolved it: relative paths (checkpoint, tokenizer, base,
    task path) resolved against ``base_dir``, absolute ones kept as written; ``limit``
    (``--limit``), when given, replaces the task's."""
    def absolute(path: str) -> str:
        return path if Path(path).is_absolute() else str((base_dir / path).resolve())

    checkpoint = {key: absolute(value) if key in ("path", "tokenizer", "base") else value
                  for key, value in study["checkpoint"].items()}
    task = {key: absolute(value) if key == "path" else value
            for key, value in study["task"].items()}
    if limit is not None:
        task["limit"] = limit
        task = {key: task[key] for key in _TASK_KEYS if key in task}  # the runner's order
    return {**study, "checkpoint": checkpoint, "task": task}


def study_hash(study: Mapping[str, Any]) -> str:
    """The study's config hash (its run directory's, and the suffix of its job ids)."""
    return config_hash(study, UNHASHED, spaced=True)


def study_experiment(study: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment table that runs ``study`` (a ``read_study`` result)."""
    checkpoint, task = study["checkpoint"], study["task"]
    overrides = {key: checkpoint[key] for key in ("tokenizer", "base") if key in checkpoint}
    if "n_head" in checkpoint:
        overrides["n_heads"] = checkpoint["n_head"]
    interventions = []
    for target in study["targets"]:
        site = "latent" if target == "all" else f"latent.{target}"
        for k in study["ks"]:
            interventions.append({"name": "svd_rank_k", "site": site, "k": k, "keep_k": "<= d"})
            if study["random_draws"]:
                interventions.append({"name": "random_rank_k", "site": site, "k": k,
                                      "draws": study["random_draws"], "keep_k": "< d"})
    tasks = {**{key: task[key] for key in ("name", "split", "path", "limit") if key in task},
             "mode": "generative", "options": dict(task["options"]),
             "max_new_tokens": study["max_new_tokens"]}
    if "max_question_tokens" in study:
        tasks["max_question_tokens"] = study["max_question_tokens"]
    return {
        "version": 1, "name": study["name"],
        "checkpoints": [{"path": checkpoint["path"], "label": checkpoint["label"],
                         "train_seed": checkpoint["train_seed"], "model": "codi",
                         **({"overrides": overrides} if overrides else {})}],
        "interventions": interventions, "tasks": [tasks],
        "eval_seeds": list(study["eval_seeds"]), "n_latents": list(study["n_latents"]),
        "batch_size": study["batch_size"], "device": study["device"],
    }
