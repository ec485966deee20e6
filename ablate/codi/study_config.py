"""The CODI study file: a TOML table of checkpoint, task and study grid (version 1).

    version = 1
    kind = "codi_study"   # tells a generic experiment loader to hand the file to this one
    name = "codi-rank-dynamics"
    [checkpoint]   path, kind ("native" | "research"), label, train_seed;
                   research only: tokenizer, base (local GPT-2 directories), n_head
    [task]         name, split, path, limit, options (the task's own settings)
    [study]        n_latents (list; 0 = no thoughts), ks, targets ("all" and/or latent
                   indices), random_draws, eval_seeds, max_new_tokens, batch_size,
                   max_question_tokens, device

Unknown keys anywhere are errors; relative paths resolve against the file's directory.
The config hash leaves out ``device`` and ``batch_size`` (they change speed, not records).

    >>> study = load_study("experiments/codi_rank_dynamics.toml")   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ablate.config import Table, check_device_name, config_hash, read_toml
from ablate.errors import AblateError

STUDY_VERSION = 1
STUDY_KIND = "codi_study"  # the top-level ``kind`` that marks a CODI study file
KINDS = ("native", "research")
UNHASHED = ("device", "batch_size")


@dataclass(frozen=True)
class CodiCheckpointSpec:
    path: str
    kind: str = "native"
    label: str = "codi"
    train_seed: int = 0
    tokenizer: str | None = None
    base: str | None = None
    n_head: int | None = None


@dataclass(frozen=True)
class CodiTaskSpec:
    name: str = "synthetic"
    split: str = "test"
    path: str | None = None
    limit: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    checkpoint: CodiCheckpointSpec
    task: CodiTaskSpec = field(default_factory=CodiTaskSpec)
    name: str = "codi-rank-dynamics"
    n_latents: tuple[int, ...] = (6,)
    ks: tuple[int, ...] = (1, 2, 4, 8, 16)
    targets: tuple[str | int, ...] = ("all",)
    random_draws: int = 1
    eval_seeds: tuple[int, ...] = (0,)
    max_new_tokens: int = 16
    batch_size: int = 32
    max_question_tokens: int | None = None
    device: str = "cpu"
    version: int = STUDY_VERSION

    def __post_init__(self) -> None:
        where = f"study '{self.name}'"
        if self.version != STUDY_VERSION:
            raise AblateError(f"{where}: version {self.version} is not supported "
                              f"(expected {STUDY_VERSION})")
        if self.checkpoint.kind not in KINDS:
            raise AblateError(f"{where}: checkpoint kind '{self.checkpoint.kind}' is not one "
                              f"of {KINDS}")
        _non_negative(self.n_latents, f"{where}: n_latents")
        _non_negative(self.eval_seeds, f"{where}: eval_seeds")
        if not self.n_latents or not self.eval_seeds:
            raise AblateError(f"{where}: n_latents and eval_seeds need at least one value")
        if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.ks):
            raise AblateError(f"{where}: ks={list(self.ks)} must be integers >= 1")
        for target in self.targets:
            if target != "all" and (isinstance(target, bool) or not isinstance(target, int)
                                    or target < 0):
                raise AblateError(f"{where}: target {target!r} must be 'all' or a latent "
                                  "index >= 0")
        try:
            check_device_name(self.device)
        except AblateError as err:
            raise AblateError(f"{where}: {err}") from None
        for name in ("random_draws", "max_new_tokens", "batch_size"):
            minimum = 0 if name == "random_draws" else 1
            if getattr(self, name) < minimum:
                raise AblateError(f"{where}: {name}={getattr(self, name)} must be >= {minimum}")

    def with_limit(self, limit: int | None) -> StudyConfig:
        """The same study on at most ``limit`` problems (None: unchanged); the limit is part
        of the config hash, so a limited study gets its own run directory."""
        return self if limit is None else replace(self, task=replace(self.task, limit=limit))

    def to_dict(self) -> dict[str, Any]:
        """TOML/JSON-ready values (None dropped, tuples as lists)."""
        return _plain(asdict(self))

    def config_hash(self) -> str:
        return config_hash(self.to_dict(), UNHASHED, spaced=True)


def _non_negative(values: tuple[int, ...], where: str) -> None:
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values):
        raise AblateError(f"{where}={list(values)} must be integers >= 0")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _table(data: Any, allowed: tuple[str, ...], where: str, source: str) -> dict[str, Any]:
    return dict(Table(data, where, source, allowed).data)


def study_from_dict(data: dict[str, Any], source: str = "<memory>",
                    base_dir: Path | None = None) -> StudyConfig:
    """Parse a study table; relative paths resolve against ``base_dir``."""
    top = _table(data, ("version", "kind", "name", "checkpoint", "task", "study"), "", source)
    if top.get("kind", STUDY_KIND) != STUDY_KIND:
        raise AblateError(f"{source}: kind = {top['kind']!r} is not a CODI study; expected "
                          f"kind = \"{STUDY_KIND}\"")
    if "checkpoint" not in top:
        raise AblateError(f"{source}: missing [checkpoint] table with at least path = ...")
    names = tuple(f.name for f in fields(CodiCheckpointSpec))
    checkpoint = _table(top["checkpoint"], names, "[checkpoint]", source)
    if "path" not in checkpoint:
        raise AblateError(f"{source} [checkpoint]: missing path")
    for key in ("path", "tokenizer", "base"):
        if checkpoint.get(key) is not None and base_dir is not None:
            checkpoint[key] = str((base_dir / checkpoint[key]).resolve()) \
                if not Path(checkpoint[key]).is_absolute() else checkpoint[key]
    task = _table(top.get("task", {}), tuple(f.name for f in fields(CodiTaskSpec)), "[task]",
                  source)
    path = task.get("path")
    if path is not None and base_dir is not None and not Path(path).is_absolute():
        task["path"] = str((base_dir / path).resolve())
    study_keys = tuple(f.name for f in fields(StudyConfig)
                       if f.name not in ("checkpoint", "task", "name", "version"))
    study = _table(top.get("study", {}), study_keys, "[study]", source)
    for key in ("n_latents", "ks", "targets", "eval_seeds"):
        if key in study:
            value = study[key]
            study[key] = tuple(value) if isinstance(value, list) else (value,)
    try:
        return StudyConfig(checkpoint=CodiCheckpointSpec(**checkpoint), task=CodiTaskSpec(**task),
                           name=top.get("name", "codi-rank-dynamics"),
                           version=top.get("version", STUDY_VERSION), **study)
    except TypeError as err:
        raise AblateError(f"{source}: {err}") from err


def is_study_file(data: dict[str, Any]) -> bool:
    """Whether parsed TOML ``data`` is a CODI study (``kind = "codi_study"``)."""
    return data.get("kind") == STUDY_KIND


def load_study(path: str | Path) -> StudyConfig:
    """Read a study TOML file (see the module docstring)."""
    file = Path(path)
    data = read_toml(file, "study file", "see experiments/codi_rank_dynamics.toml for the format")
    if "version" not in data:
        raise AblateError(f"{file}: missing 'version = {STUDY_VERSION}' at the top")
    return study_from_dict(data, str(file), file.parent.resolve())
