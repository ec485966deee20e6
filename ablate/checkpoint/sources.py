"""Where the facts a state dict cannot tell come from (spec §3.6), one ``Source`` each.

A source is one place that states values about the model: the flags or experiment
overrides, a config stored in the checkpoint file itself (``config``, ``cfg``, ``args``,
``hparams``, ...), a ``config.json`` next to it, the ``config`` block and ``experiment``
name of ``results.json``, the attention class a copied ``script.py`` defines. A research
script or experiment name of the research (spec §7.4) states the attention type it ran.
Values are read into ablate's key names; ``ablate.checkpoint.settings`` resolves them.

    >>> sources, metadata = read_sidecars(Path("runs/round2/best.pt"))   # doctest: +SKIP
    >>> [s.name for s in sources]                                        # doctest: +SKIP
    ['config.json', 'results.json (config)', 'script.py (defines MatrixFrobeniusAttention)']
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.config import read_json_object
from ablate.errors import AblateError, unknown_name_error
from ablate.model import VARIANTS
from ablate.model.config import EMBEDDINGS

# Research spellings (reference-case config.json) and ours, to ablate's names.
ATTENTION_NAMES = {"frobenius": "frobenius", "frobenius_sdpa": "frobenius",
                   "matrix3d": "matrix3d", "matrix_product_3d": "matrix3d"}
HEAD_NAMES = {"multiprobe": "multiprobe", "collapse": "collapse", "vector_collapse": "collapse"}
# Other spellings of n_heads and attention that configs of later scripts use.
KEY_ALIASES = {"n_heads": ("num_heads", "n_head", "num_attention_heads"),
               "attention": ("attention_type", "attn_type")}
# The research scripts and experiment (results directory) names, and the attention each ran
# (spec §7.4); any other experiment name with "3d" in it is a 3D-attention run.
RESEARCH_SCRIPTS = {"run_round2.py": "frobenius", "run_round1.py": "frobenius",
                    "run_byte_matrix.py": "frobenius", "run_3d_attention.py": "matrix3d"}
RESEARCH_EXPERIMENTS = {"round2_multiprobe": "frobenius", "round1_matrix": "frobenius",
                        "exp_byte_d16": "frobenius", "exp_3d_attn": "matrix3d",
                        "exp_3d_attn_full": "matrix3d"}
# Class names of spec §2.3/§2.4: a copied script.py says which attention ran.
ATTENTION_CLASSES = {"Matrix3DAttention": "matrix3d", "MatrixFrobeniusAttention": "frobenius"}
_INT_KEYS = ("mat_dim", "n_layers", "n_heads", "n_probes", "vocab_size", "max_len",
             "embedding_rank", "n_iterations", "head_dim")
_HINT_3D = re.compile(r"3d", re.IGNORECASE)


@dataclass
class Source:
    """Values one place states about the model, in ablate's key names.

    ``kind``: "flags" (CLI), "overrides" (experiment or Python), "embedded" (a config in
    the checkpoint file), "sidecar" (a file next to it) or "native" (a native config.json).
    ``unreadable`` keeps values an embedded config gives in a form ablate cannot read.
    """

    name: str
    kind: str
    values: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    implied: set[str] = field(default_factory=set)  # keys set by ``variant``
    unreadable: dict[str, Any] = field(default_factory=dict)
    file: str | None = None  # the full path, for errors about the file itself

    @property
    def named(self) -> str:
        return self.file or self.name

    def where(self, key: str) -> str:
        """How an error names the place this source gives ``key``."""
        if self.kind == "flags":
            if key in self.implied:
                return f"--variant {self.variant}"
            return "--" + key.replace("_", "-")
        if self.kind == "overrides":
            if key in self.implied:
                return f"the variant override ({self.variant})"
            return f"the {key} override"
        if key in self.implied:
            return f"{self.name} (variant {self.variant})"
        return self.name


def read_mapping(raw: Mapping[str, Any], name: str, kind: str,
                 file: str | None = None) -> list[Source]:
    """The source ``raw`` is, plus one for each research script or experiment name it
    gives. Keys ablate has no use for are skipped (sidecars are the research code's files).
    Values ablate cannot read are errors, except in embedded configs, which cannot be
    edited: there they are kept in ``unreadable`` and the fact counts as unstated."""
    source = Source(name, kind, file=file)
    strict = kind != "embedded"
    raw = dict(raw)
    for key, aliases in KEY_ALIASES.items():
        if raw.get(key) is None:
            raw[key] = next((raw[a] for a in aliases if raw.get(a) is not None), None)
    values = source.values
    for key in _INT_KEYS:
        if raw.get(key) is not None:
            _read(source, key, raw[key], _integer, strict)
    if raw.get("n_thinking_layers") is not None and "n_layers" not in values:
        _read(source, "n_layers", raw["n_thinking_layers"], _integer, strict)
    if "n_probes" in raw and not raw["n_probes"]:
        values["n_probes"] = None  # research: a falsy n_probes means K = d
    if raw.get("dropout") is not None:
        _read(source, "dropout", raw["dropout"], _number, strict)
    for key, names in (("attention", ATTENTION_NAMES), ("head", HEAD_NAMES)):
        if raw.get(key) is not None:
            _read(source, key, raw[key], lambda v, names=names: names[v], strict,
                  allowed=", ".join(names))
    if raw.get("embedding") is not None:
        if raw["embedding"] in EMBEDDINGS:
            values["embedding"] = raw["embedding"]
        elif strict:
            raise unknown_name_error(f"embedding (in {source.named})", str(raw["embedding"]),
                                     EMBEDDINGS)
        else:
            source.unreadable["embedding"] = raw["embedding"]
    if raw.get("variant") is not None:
        _read_variant(source, str(raw["variant"]), strict)
    return [source, *_named_runs(raw, name, kind)]


def _read(source: Source, key: str, value: Any, parse: Any, strict: bool,
          allowed: str | None = None) -> None:
    try:
        source.values[key] = parse(value)
    except (KeyError, TypeError, ValueError):
        if not strict:
            source.unreadable[key] = value
            return
        expected = f"one of {allowed}" if allowed else (
            "a number" if key == "dropout" else "an integer")
        raise AblateError(f"{source.named}: {key}={value!r} is not {expected}; fix it there"
                          ) from None


def _integer(value: Any) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value != int(value)):
        raise ValueError(value)
    return int(value)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def _read_variant(source: Source, variant: str, strict: bool) -> None:
    if variant not in VARIANTS:
        if not strict:
            source.unreadable["variant"] = variant
            return
        raise AblateError(f"{source.named}: {unknown_name_error('variant', variant, VARIANTS)}")
    source.variant = variant
    for key, implied in zip(("attention", "head"), VARIANTS[variant], strict=True):
        if key not in source.values:
            source.values[key] = implied
            source.implied.add(key)
        elif source.values[key] != implied:
            raise AblateError(
                f"{source.named}: variant '{variant}' implies {key}={implied} but {key}="
                f"{source.values[key]} is also given; drop one of the two"
            )


def _named_runs(raw: Mapping[str, Any], name: str, kind: str) -> list[Source]:
    """Sources for the research script or experiment name a mapping gives."""
    found = []
    script = raw.get("research_script")
    if isinstance(script, str):
        attention = RESEARCH_SCRIPTS.get(Path(script).name)
        if attention is None and _HINT_3D.search(Path(script).name):
            attention = "matrix3d"
        if attention is not None:
            found.append(Source(f"{name} (research_script {Path(script).name})", kind,
                                {"attention": attention}))
    experiment = raw.get("experiment")
    if isinstance(experiment, str):
        attention = RESEARCH_EXPERIMENTS.get(experiment)
        if attention is None and _HINT_3D.search(experiment):
            attention = "matrix3d"
        if attention is not None:
            found.append(Source(f"{name} (experiment '{experiment}')", kind,
                                {"attention": attention}))
    return found


def flag_source(overrides: Mapping[str, Any], kind: str) -> Source:
    """The overrides as a source: ``kind`` "flags" (named --n-heads in errors) or
    "overrides"."""
    name = "flags" if kind == "flags" else "overrides"
    return read_mapping(overrides, name, kind)[0]


def read_sidecars(checkpoint: Path) -> tuple[list[Source], dict[str, Any]]:
    """Sources next to a research ``checkpoint`` file, and metadata worth keeping
    (``sidecars``: the files read; results.json's experiment, params, final_evals)."""
    folder = checkpoint.parent
    sources: list[Source] = []
    metadata: dict[str, Any] = {"sidecars": []}
    config_file = folder / "config.json"
    if config_file.is_file():
        sources += read_mapping(read_json(config_file), config_file.name, "sidecar",
                                str(config_file))
        metadata["sidecars"].append(str(config_file))
    results_file = folder / "results.json"
    if results_file.is_file():
        raw = read_json(results_file)
        block = raw.get("config", {})
        if not isinstance(block, Mapping):
            raise AblateError(f"{results_file}: 'config' is not an object; fix or remove the file")
        sources += read_mapping(block, f"{results_file.name} (config)", "sidecar",
                                str(results_file))
        sources += _named_runs({"experiment": raw.get("experiment")}, results_file.name,
                               "sidecar")
        metadata["sidecars"].append(str(results_file))
        metadata.update({k: raw[k] for k in ("experiment", "params", "final_evals") if k in raw})
    script_file = folder / "script.py"
    if script_file.is_file():
        text = script_file.read_text(encoding="utf-8", errors="replace")
        defined = next((c for c in ATTENTION_CLASSES if f"class {c}" in text), None)
        if defined is not None:
            sources.append(Source(f"{script_file.name} (defines {defined})", "sidecar",
                                  {"attention": ATTENTION_CLASSES[defined]}))
            metadata["sidecars"].append(str(script_file))
    return sources, metadata


def name_suggests(checkpoint: Path) -> str | None:
    """"3d" in the checkpoint's directory name suggests 3D attention; a suggestion for an
    error message, never a source (a name is not a record of what ran)."""
    folder = checkpoint.parent.name
    return "matrix3d" if _HINT_3D.search(folder) else None


def read_json(path: Path) -> dict[str, Any]:
    return read_json_object(path, "fix or remove the file")
