"""The config of a research checkpoint: shapes, plus what shapes cannot tell (spec §3.6).

A state dict gives d, V, P, NL, K and the head; the attention type, ``n_heads``,
``dropout`` and the default T come from, in order: overrides (CLI flags), a
``config.json`` next to the file, the ``config`` block of ``results.json``, hints
(``script.py`` defining ``Matrix3DAttention``, an experiment or directory name with "3d"),
and last the research script defaults, with a note saying so. Every value a sidecar
states is checked against the shapes, so a sidecar from another run is caught.

    >>> sources, meta = read_sidecars(Path("runs/round2/best.pt"))     # doctest: +SKIP
    >>> config, notes = resolve_config(shapes, sources, "best.pt")     # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.checkpoint.research import Shapes
from ablate.errors import AblateError, unknown_name_error
from ablate.model import VARIANTS, MatrixThinkerConfig
from ablate.model.config import EMBEDDINGS

# Research spellings (reference-case config.json) and ours, to ablate's names.
ATTENTION_NAMES = {"frobenius": "frobenius", "frobenius_sdpa": "frobenius",
                   "matrix3d": "matrix3d", "matrix_product_3d": "matrix3d"}
HEAD_NAMES = {"multiprobe": "multiprobe", "collapse": "collapse", "vector_collapse": "collapse"}
# Script defaults (spec §3.6): H=8 at d=32 (round 1, round 2), H=4 at d=16 (3D, byte).
DEFAULT_N_HEADS = {32: 8, 16: 4}
# Keys a caller may override; "tokenizer" is a path used by the loader, not the config.
OVERRIDE_KEYS = ("attention", "n_heads", "variant", "embedding", "embedding_rank",
                 "n_iterations", "dropout", "tokenizer")
_INT_KEYS = ("mat_dim", "n_layers", "n_heads", "n_probes", "vocab_size", "max_len",
             "embedding_rank", "n_iterations", "head_dim")
_SHAPE_KEYS = ("mat_dim", "vocab_size", "max_len", "n_layers", "n_probes", "head")
_SETTING_KEYS = ("attention", "n_heads", "embedding", "embedding_rank", "n_iterations", "dropout")
_HINT_3D = re.compile(r"3d", re.IGNORECASE)


@dataclass
class Source:
    """Values one place states about the model, in ablate's key names."""

    name: str  # a file path, or "overrides" (CLI flags)
    values: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    hint: bool = False  # a guess from names, reported in the notes when it decides


def normalise(raw: Mapping[str, Any], name: str) -> Source:
    """Read the keys ablate understands from a sidecar/override mapping; others are skipped
    (sidecars are the research code's files, with keys ablate has no use for)."""
    source = Source(name)
    values = source.values
    for key in _INT_KEYS:
        if raw.get(key) is not None:
            values[key] = _integer(raw[key], key, name)
    if raw.get("n_thinking_layers") is not None:
        values.setdefault("n_layers", _integer(raw["n_thinking_layers"], "n_thinking_layers", name))
    if "n_probes" in raw and not raw["n_probes"]:
        values["n_probes"] = None  # research: a falsy n_probes means K = d
    if raw.get("dropout") is not None:
        dropout = raw["dropout"]
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise AblateError(f"{name}: dropout={dropout!r} is not a number; fix it there")
        values["dropout"] = float(dropout)
    for key, names in (("attention", ATTENTION_NAMES), ("head", HEAD_NAMES)):
        if raw.get(key) is not None:
            if raw[key] not in names:
                raise AblateError(
                    f"{name}: {key} '{raw[key]}' is not one of {', '.join(names)}; fix it there"
                )
            values[key] = names[raw[key]]
    if raw.get("embedding") is not None:
        if raw["embedding"] not in EMBEDDINGS:
            raise unknown_name_error(f"embedding (in {name})", str(raw["embedding"]), EMBEDDINGS)
        values["embedding"] = raw["embedding"]
    if raw.get("variant") is not None:
        variant = str(raw["variant"])
        if variant not in VARIANTS:
            err = unknown_name_error("variant", variant, VARIANTS)
            raise AblateError(f"{name}: {err}")
        source.variant = variant
        for key, implied in zip(("attention", "head"), VARIANTS[variant], strict=True):
            if values.setdefault(key, implied) != implied:
                raise AblateError(
                    f"{name}: variant '{variant}' implies {key}={implied} but {key}="
                    f"{values[key]} is also given; drop one of the two"
                )
    return source


def _integer(value: Any, key: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise AblateError(f"{name}: {key}={value!r} is not an integer; fix it there")
    return int(value)


def read_sidecars(checkpoint: Path) -> tuple[list[Source], dict[str, Any]]:
    """Sources next to a research ``checkpoint`` file, strongest first, and metadata
    worth keeping (results.json's experiment, params, final_evals)."""
    folder = checkpoint.parent
    sources: list[Source] = []
    metadata: dict[str, Any] = {}
    hints: list[Source] = []
    config_file = folder / "config.json"
    if config_file.is_file():
        raw = read_json(config_file)
        sources.append(normalise(raw, str(config_file)))
        script = raw.get("research_script")
        if isinstance(script, str) and _HINT_3D.search(Path(script).name):
            hints.append(_hint(f"research_script '{script}' in {config_file}", "matrix3d"))
    results_file = folder / "results.json"
    if results_file.is_file():
        raw = read_json(results_file)
        block = raw.get("config", {})
        if not isinstance(block, Mapping):
            raise AblateError(f"{results_file}: 'config' is not an object; fix or remove the file")
        sources.append(normalise(block, f"{results_file} (config)"))
        metadata.update({k: raw[k] for k in ("experiment", "params", "final_evals") if k in raw})
        experiment = raw.get("experiment")
        if isinstance(experiment, str) and _HINT_3D.search(experiment):
            hints.append(_hint(f"experiment '{experiment}' in {results_file}", "matrix3d"))
    script_file = folder / "script.py"
    if script_file.is_file():
        text = script_file.read_text(encoding="utf-8", errors="replace")
        # Class names from spec §2.3/§2.4: the copied script says which attention ran.
        if "Matrix3DAttention" in text:
            hints.append(_hint(f"{script_file} defines Matrix3DAttention", "matrix3d"))
        elif "MatrixFrobeniusAttention" in text:
            hints.append(_hint(f"{script_file} defines MatrixFrobeniusAttention", "frobenius"))
    if _HINT_3D.search(folder.name):
        hints.append(_hint(f"the directory name '{folder.name}'", "matrix3d"))
    return sources + hints, metadata


def _hint(name: str, attention: str) -> Source:
    return Source(name, {"attention": attention}, hint=True)


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AblateError(f"{path}: not valid JSON ({err}); fix or remove the file") from err
    if not isinstance(data, dict):
        raise AblateError(f"{path}: expected a JSON object, got {type(data).__name__}; fix it")
    return data


def resolve_config(
    shapes: Shapes, sources: list[Source], checkpoint: str
) -> tuple[MatrixThinkerConfig, list[str]]:
    """The config for ``shapes`` given ``sources`` (strongest first), and notes."""
    for source in sources:
        _check_against_shapes(source, shapes, checkpoint)
    notes: list[str] = []
    chosen: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key in _SETTING_KEYS:
        for source in sources:
            if key in source.values:
                chosen[key], origin[key] = source.values[key], source.name
                break
    if "n_heads" not in chosen:
        head_dim = next((s.values["head_dim"] for s in sources if "head_dim" in s.values), None)
        if head_dim and shapes.mat_dim % head_dim == 0:
            chosen["n_heads"], origin["n_heads"] = shapes.mat_dim // head_dim, "head_dim"
    if "attention" not in chosen:
        chosen["attention"] = "frobenius"
        notes.append(
            "attention type assumed 'frobenius' (no flag, sidecar or 3D hint); a 3D-attention "
            "checkpoint has the same keys but computes another function: pass --attention "
            "matrix3d if it came from run_3d_attention.py"
        )
    elif any(s.hint and s.name == origin["attention"] for s in sources):
        notes.append(f"attention '{chosen['attention']}' inferred from {origin['attention']}")
    if "n_heads" not in chosen:
        default = DEFAULT_N_HEADS.get(shapes.mat_dim)
        if default is None:
            raise AblateError(
                f"{checkpoint}: n_heads is not stored in the weights and d={shapes.mat_dim} "
                "has no research default (8 at d=32, 4 at d=16); pass --n-heads H or put a "
                "config.json with n_heads next to the file"
            )
        chosen["n_heads"] = default
        notes.append(f"n_heads assumed {default}, the research default at d={shapes.mat_dim}; "
                     "pass --n-heads if the run used another")
    embedding, rank = _resolve_embedding(shapes, chosen, origin, checkpoint, notes)
    try:
        config = MatrixThinkerConfig(
            mat_dim=shapes.mat_dim, n_layers=shapes.n_layers, n_heads=chosen["n_heads"],
            n_probes=shapes.n_probes, vocab_size=shapes.vocab_size, max_len=shapes.max_len,
            head=shapes.head, embedding=embedding, embedding_rank=rank,
            attention=chosen["attention"],
            **{k: chosen[k] for k in ("dropout", "n_iterations") if k in chosen},
        )
    except AblateError as err:
        where = ", ".join(f"{k} from {v}" for k, v in origin.items())
        raise AblateError(f"{checkpoint} ({where or 'defaults'}): {err}") from err
    return config, notes


def named_variant(config: MatrixThinkerConfig, sources: list[Source]) -> str:
    """The variant name a source gives, if it still fits the final config's attention and
    head (a flag may have changed them), else the name the config itself implies."""
    for source in sources:
        if source.variant and VARIANTS[source.variant] == (config.attention, config.head):
            return source.variant
    return config.variant


def _check_against_shapes(source: Source, shapes: Shapes, checkpoint: str) -> None:
    for key in _SHAPE_KEYS:
        if key not in source.values:
            continue
        stated = source.values[key]
        actual = getattr(shapes, key)
        if key == "n_probes":
            if shapes.head == "collapse":
                continue  # the collapse head has no probes; round-1 configs may still list K
            stated = stated or shapes.mat_dim
        if stated != actual:
            what = f"variant '{source.variant}' implies" if (
                key == "head" and source.variant) else "states"
            raise AblateError(
                f"{source.name} {what} {key}={stated} but {checkpoint} has "
                f"{shapes.describe(key)}; it describes another checkpoint: correct {key} in "
                f"{source.name} or pass the checkpoint it belongs to"
            )


def _resolve_embedding(
    shapes: Shapes, chosen: dict[str, Any], origin: dict[str, str], checkpoint: str,
    notes: list[str],
) -> tuple[str, int]:
    """The embedding kind and rank that fit embed_u's width and embed_pair's presence."""
    d, width = shapes.mat_dim, shapes.embedding_width
    r = width // d
    stated = chosen.get("embedding")
    if shapes.has_pair:
        fits, kind = stated in (None, "pairwise") and r == 1, "pairwise"
    elif r > 1:
        fits, kind = stated in (None, "rank_r", "bigram"), stated or "rank_r"
        if stated is None:
            notes.append(f"embedding assumed 'rank_r' (embed_u width {width} = {r}·d); 'bigram' "
                         "has the same shapes: set embedding in a config.json if it was bigram")
    else:
        fits, kind = stated in (None, "outer"), "outer"
    layout = (f"embed_u width {width} (d={d}) and "
              f"{'an' if shapes.has_pair else 'no'} embed_pair")
    if not fits and stated is None:
        raise AblateError(f"{checkpoint}: {layout} fit no embedding kind; the file is inconsistent")
    if not fits:
        raise AblateError(
            f"{origin['embedding']} states embedding={stated} but {checkpoint} has {layout}; "
            "correct the embedding setting or pass the checkpoint it belongs to"
        )
    stated_rank = chosen.get("embedding_rank", r)
    if r > 1 and stated_rank != r:
        raise AblateError(
            f"{origin['embedding_rank']} states embedding_rank={stated_rank} but {checkpoint} "
            f"has embed_u width {width} = {r}·d; set embedding_rank={r}"
        )
    return kind, r
