"""``load_checkpoint``: one entry point for native directories and research ``.pt`` files.

``read_checkpoint`` does everything but build the model: it reads the weights and every
source of the facts they cannot tell, and resolves the config with the place each fact
came from (``CheckpointInfo.settings``); run manifests record that without a model.

    >>> model, tokenizer, info = load_checkpoint("runs/exp_3d_attn")  # doctest: +SKIP
    >>> info.format, info.config["attention"]                         # doctest: +SKIP
    ('research', 'matrix3d')
    >>> info.settings["attention"]["source"]                          # doctest: +SKIP
    "results.json (experiment 'exp_3d_attn')"
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ablate.checkpoint.native import CONFIG_FILE, WEIGHTS_FILE, is_native, read_native
from ablate.checkpoint.research import infer_shapes, read_state_dict
from ablate.checkpoint.settings import (
    FACTS,
    OVERRIDE_KEYS,
    SETTINGS,
    Setting,
    agreed,
    check_n_heads,
    named_variant,
    resolve,
    settings_dict,
)
from ablate.checkpoint.sources import Source, flag_source, read_mapping, read_sidecars
from ablate.checkpoint.weights import build_model, check_tensors
from ablate.config import resolve_device
from ablate.errors import AblateError, unknown_name_error
from ablate.model import MatrixThinker, MatrixThinkerConfig
from ablate.tokenizer import HF_TOKENIZER_FILES, ByteTokenizer, Tokenizer, load_tokenizer

logger = logging.getLogger(__name__)

RESEARCH_FILE = "best.pt"
# The byte vocabulary of the reference models: 256 bytes + these specials = 259 ids.
REFERENCE_SPECIALS = ("<pad>", "<bot>", "<eot>")
CONFIG_KEYS = tuple(
    name for name in inspect.signature(MatrixThinkerConfig.__init__).parameters
    if name not in ("self", "kwargs", "ablate_config_version")
)


@dataclass
class CheckpointInfo:
    """What was loaded and how. ``config`` holds the ``MatrixThinkerConfig`` values
    (``CONFIG_KEYS``); ``notes`` lists every assumption and repair made while loading."""

    format: str  # "native" | "research"
    path: str  # the checkpoint directory (native) or the .pt file (research)
    variant: str  # a research variant name (ablate.model.VARIANTS) or "custom"
    config: dict[str, Any]
    n_params: int  # trainable parameters, the spec §5 count (buffers excluded)
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # FACTS and SETTINGS the weights do not give: {name: {"value", "source", "how"}}, "how"
    # being "stated" | "inferred" | "assumed" | "default" (ablate.checkpoint.settings.Setting)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def assumed(self) -> list[str]:
        """The facts taken from research defaults rather than stated anywhere."""
        return [name for name, s in self.settings.items() if s.get("how") == "assumed"]

    def describe_settings(self) -> list[str]:
        """``n_heads = 8 (from results.json (config))``, one line per setting."""
        return [Setting(**values).describe(name) for name, values in self.settings.items()]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Loaded(NamedTuple):
    """``model`` in eval mode; ``tokenizer`` (None only with ``require_tokenizer=False``)."""

    model: MatrixThinker
    tokenizer: Tokenizer | None
    info: CheckpointInfo


def config_values(config: MatrixThinkerConfig) -> dict[str, Any]:
    """The config as plain JSON values, ablate's keys only."""
    return {key: getattr(config, key) for key in CONFIG_KEYS}


def locate(path: Path) -> tuple[str, Path]:
    """("native", directory) or ("research", .pt file) for a user-given path."""
    if not path.exists():
        raise AblateError(
            f"Checkpoint {path} does not exist; pass a checkpoint directory "
            f"({CONFIG_FILE} + {WEIGHTS_FILE}) or a research .pt file"
        )
    if path.is_file():
        if path.name in (WEIGHTS_FILE, CONFIG_FILE) and is_native(path.parent):
            return "native", path.parent
        return "research", path
    if is_native(path):
        return "native", path
    if (path / RESEARCH_FILE).is_file():
        return "research", path / RESEARCH_FILE
    found = sorted(p.name for p in path.iterdir())
    listing = ", ".join(found[:6]) + (" ..." if len(found) > 6 else "") if found else "nothing"
    other_pt = [name for name in found if name.endswith(".pt")]
    fix = (f"pass the .pt file itself, e.g. {path / other_pt[0]}" if other_pt else
           "pass a directory saved by ablate or holding a research best.pt")
    raise AblateError(
        f"{path} holds neither {CONFIG_FILE} + {WEIGHTS_FILE} (native) nor {RESEARCH_FILE} "
        f"(research); found {listing}; {fix}"
    )


@dataclass
class Resolved:
    """A checkpoint read and resolved, its model not yet built."""

    kind: str  # "native" | "research"
    target: Path
    config: MatrixThinkerConfig
    state: dict[str, torch.Tensor]
    weights_name: str
    variant: str
    metadata: dict[str, Any]
    notes: list[str]
    settings: dict[str, Setting]


def read_checkpoint(
    path: str | Path, *, overrides: dict[str, Any] | None = None,
    overrides_from: str = "overrides",
) -> Resolved:
    """Read a checkpoint and resolve its config, with the source of every fact the
    weights cannot give (see ``load_checkpoint`` for ``overrides`` and ``overrides_from``)."""
    given = _checked_overrides(overrides)
    assume = bool(given.pop("assume_research_defaults", False))
    kind_of_flags = "flags" if overrides_from == "flags" else "overrides"
    flags = flag_source({k: v for k, v in given.items() if k != "tokenizer"}, kind_of_flags)
    kind, target = locate(Path(path))
    if kind == "native":
        config, state, metadata, notes = read_native(target)
        weights_name = str(target / WEIGHTS_FILE)
        notes += check_tensors(state, weights_name)
        config, settings = _native_settings(config, metadata, flags, target, notes)
        variant = named_variant(config, [flags])
    else:
        found = read_state_dict(target)
        state, notes = found.state, found.notes
        weights_name = str(target)
        notes += check_tensors(state, weights_name)
        shapes = infer_shapes(state, str(target))
        embedded = [source for where, values in found.configs
                    for source in read_mapping(values, where, "embedded")]
        sidecars, extra = read_sidecars(target)
        sources = [flags, *embedded, *sidecars]
        resolved = resolve(shapes, sources, target, style=overrides_from,
                           assume_defaults=assume)
        config, settings = resolved.config, resolved.settings
        notes += resolved.notes
        variant = named_variant(config, sources)
        metadata = {"source": str(target), **extra}
        if found.configs:
            metadata["embedded_configs"] = [where for where, _ in found.configs]
    return Resolved(kind, target, config, state, weights_name, variant, metadata, notes,
                    settings)


def load_checkpoint(
    path: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    require_tokenizer: bool = True,
    overrides_from: str = "overrides",
) -> Loaded:
    """Load a native or research checkpoint as a ``MatrixThinker`` in eval mode.

    ``overrides`` (keys ``OVERRIDE_KEYS``; None values are ignored) state what the weights
    cannot: ``attention`` ("frobenius" | "matrix3d"), ``n_heads``, ``variant``,
    ``embedding``, ``embedding_rank``; a stated value that contradicts the checkpoint's own
    config or a sidecar is an error, never a silent override. ``n_iterations`` and
    ``dropout`` (settings that leave the eval function alone) do override.
    ``assume_research_defaults`` (bool) fills facts nothing states with the research
    script defaults, recorded as assumed. ``tokenizer`` is a directory. Without a tokenizer
    (non-byte vocab, no files, no override) it raises, unless ``require_tokenizer`` is
    False. ``overrides_from`` ("flags" | "experiment" | "overrides") words the fixes that
    errors suggest (``--n-heads H``, ``n_heads = H`` in the [[checkpoints]] overrides, ...).
    """
    resolved = read_checkpoint(path, overrides=overrides, overrides_from=overrides_from)
    kind, target, config = resolved.kind, resolved.target, resolved.config
    notes = resolved.notes
    tokenizer = _resolve_tokenizer(kind, target, config, (overrides or {}).get("tokenizer"),
                                   require_tokenizer, notes)
    if isinstance(tokenizer, ByteTokenizer) and not config.specials:
        config.specials = list(tokenizer.specials)
    model = build_model(config, resolved.state, resolved.weights_name)
    try:
        model.to(resolve_device(device))
    except (RuntimeError, AssertionError) as err:
        raise AblateError(f"device {device!r} is not usable here ({err}); use 'cpu'") from err
    info = CheckpointInfo(
        format=kind, path=str(target), variant=resolved.variant, config=config_values(config),
        n_params=model.num_parameters_trainable(), metadata=resolved.metadata, notes=notes,
        settings=settings_dict(resolved.settings),
    )
    for note in notes:
        logger.info("%s: %s", target, note)
    return Loaded(model.eval(), tokenizer, info)


# Notes an ablate convert wrote before conversions recorded source_settings, when it
# guessed a fact; such a copy's config.json states the guess.
_OLD_ASSUMPTION_NOTES = {"n_heads": "n_heads assumed", "attention": "attention type assumed"}


def _older_conversion(metadata: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    notes = metadata.get("source_notes")
    if not isinstance(notes, list):
        return {}
    return {fact: {"value": stored[fact], "how": "assumed",
                   "source": "guessed by an earlier ablate convert"}
            for fact, text in _OLD_ASSUMPTION_NOTES.items()
            if any(isinstance(n, str) and n.startswith(text) for n in notes)}


def _checked_overrides(overrides: dict[str, Any] | None) -> dict[str, Any]:
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    for key in given:
        if key not in OVERRIDE_KEYS:
            raise unknown_name_error("checkpoint override", key, OVERRIDE_KEYS)
    assume = given.get("assume_research_defaults", False)
    if not isinstance(assume, bool):
        raise AblateError(f"assume_research_defaults={assume!r} must be true or false")
    return given


def _native_settings(
    config: MatrixThinkerConfig, metadata: dict[str, Any], flags: Source, target: Path,
    notes: list[str],
) -> tuple[MatrixThinkerConfig, dict[str, Setting]]:
    """A native config states every fact: a flag may repeat one, not contradict it (the
    head included); settings (T, dropout) may change, with a note. Facts a conversion
    assumed stay marked assumed (``ablate_meta.json`` keeps the research file's settings)."""
    stored = config_values(config)
    native = read_mapping({k: stored[k] for k in ("attention", "n_heads", "embedding",
                                                  "embedding_rank", "head")},
                          f"the checkpoint's {CONFIG_FILE}", "native")[0]
    head = flags.values.get("head")
    if head is not None and head != config.head:
        raise AblateError(
            f"variant '{flags.variant}' has head={head} but {target} stores head={config.head}; "
            "pick a variant with that head or drop the variant override"
        )
    if "n_heads" in flags.values:
        check_n_heads(Setting(flags.values["n_heads"], flags.where("n_heads"), "stated"),
                      config.mat_dim, str(target))
    for key in (*FACTS, "embedding_rank"):
        agreed(key, [flags, native], str(target))
    recorded = metadata.get("source_settings")
    recorded = recorded if isinstance(recorded, dict) else _older_conversion(metadata, stored)
    origin = metadata.get("source")
    settings: dict[str, Setting] = {}
    for fact in FACTS:
        earlier = recorded.get(fact) if isinstance(recorded.get(fact), dict) else {}
        if earlier.get("value") != stored[fact] or earlier.get("how") not in (
                "stated", "inferred", "assumed"):
            settings[fact] = Setting(stored[fact], native.name, "stated")
            continue
        # Converted from a research file: keep where the fact came from there.
        settings[fact] = Setting(stored[fact], f"{earlier.get('source')}, recorded when "
                                 f"{origin} was converted", earlier["how"])
        if earlier["how"] == "assumed":
            notes.append(settings[fact].describe(fact))
    changed = {}
    for key in SETTINGS:
        if key in flags.values and flags.values[key] != stored[key]:
            notes.append(f"{key} overridden: stored {stored[key]!r}, using {flags.values[key]!r}")
            changed[key] = flags.values[key]
            settings[key] = Setting(flags.values[key], flags.where(key), "stated")
        else:
            settings[key] = Setting(stored[key], native.name, "stated")
    if not changed:
        return config, settings
    try:
        return MatrixThinkerConfig(**{**stored, **changed}), settings
    except AblateError as err:
        raise AblateError(f"{target} with overrides {changed}: {err}") from err


def _resolve_tokenizer(
    kind: str, target: Path, config: MatrixThinkerConfig, override: str | Path | None,
    required: bool, notes: list[str],
) -> Tokenizer | None:
    folder = target if kind == "native" else target.parent
    V = config.vocab_size
    tokenizer: Tokenizer | None = None
    if override is not None:
        tokenizer = load_tokenizer(override)
    elif any((folder / name).is_file() for name in HF_TOKENIZER_FILES):
        tokenizer = load_tokenizer(folder)
    elif config.specials and len(config.specials) == V - 256:
        tokenizer = ByteTokenizer(config.specials)
        notes.append(f"no tokenizer files: byte tokenizer with the config's specials "
                     f"{config.specials}")
    elif V == 256:
        tokenizer = ByteTokenizer()
    elif len(REFERENCE_SPECIALS) == V - 256:
        tokenizer = ByteTokenizer(REFERENCE_SPECIALS)
        notes.append(f"vocab_size {V} read as 256 bytes + specials {list(REFERENCE_SPECIALS)} "
                     "(the reference byte vocabulary); pass --tokenizer if it used others")
    elif required:
        raise AblateError(
            f"{target}: vocab_size {V} is not a byte vocabulary (256 or 259) and no tokenizer "
            "is saved with it; pass --tokenizer DIR (for GPT-2 BPE checkpoints a directory "
            "written by AutoTokenizer.from_pretrained('gpt2').save_pretrained(DIR))"
        )
    else:
        notes.append(f"no tokenizer for vocab_size {V}: pass --tokenizer DIR to decode text")
    if tokenizer is not None and tokenizer.vocab_size > V:
        raise AblateError(
            f"the tokenizer for {target} has {tokenizer.vocab_size} ids but the model only {V}; "
            "pass the tokenizer the model was trained with"
        )
    return tokenizer
