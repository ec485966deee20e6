"""Reading research checkpoints: a ``best.pt`` state dict, what its shapes tell, and any
config stored beside the weights in the same file.

The research scripts save a plain state dict (spec §8); later scripts wrap it as
``{"step", "model_state_dict", "optimizer_state_dict", "config", ...}``, and DDP or
``torch.compile`` would prefix every key. Files are read with ``weights_only=True`` only:
ablate never unpickles code. A class the file names (an ``argparse.Namespace`` of args, a
dataclass config, a whole pickled model) is rebuilt as an inert ``Unpickled`` record of
its fields, inside torch's restricted unpickler; the class itself is never imported or run.

    >>> found = read_state_dict(Path("runs/round2/best.pt"))          # doctest: +SKIP
    >>> infer_shapes(found.state, "runs/round2/best.pt").mat_dim        # doctest: +SKIP
    32
    >>> found.configs   # [("'config' in best.pt", {...})] for a mid-training file  # doctest: +SKIP
"""

from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ablate.errors import AblateError, shown

WRAPPER_KEYS = ("model_state_dict", "model", "state_dict")
# Entries of a wrapped checkpoint dict that may hold the run's config (a dict, an
# argparse.Namespace or a dataclass), and sub-tables of a config that hold the model's.
CONFIG_KEYS = ("config", "cfg", "args", "hparams", "hyper_parameters", "hyperparameters",
               "model_config", "model_args", "model_cfg")
MODEL_TABLES = ("model", "model_config", "model_args", "arch", "architecture")
PREFIXES = ("module.", "_orig_mod.")
ZIP_MAGIC = b"PK\x03\x04"
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")
_REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_SAVE_WEIGHTS = "torch.save(model.state_dict(), path)"


class Unpickled:
    """An inert stand-in for a class a checkpoint names (``pickled_name``): it records the
    constructor arguments and the pickled state, and runs none of the class's code."""

    pickled_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Unpickled:
        self = super().__new__(cls)
        self.args, self.state = args, {}
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # __new__ recorded everything

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, __slots__ values)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.state = dict(state) if isinstance(state, Mapping) else {"state": state}


@dataclass
class ResearchFile:
    """A research checkpoint's state dict (unwrapped, prefixes stripped), notes on what
    was done, and the configs stored in the same file as (where, values) pairs."""

    state: dict[str, torch.Tensor]
    notes: list[str] = field(default_factory=list)
    configs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def read_state_dict(path: Path) -> ResearchFile:
    """The state dict in ``path``, notes, and the configs embedded beside it."""
    size = path.stat().st_size
    if size == 0:
        raise AblateError(
            f"{path}: the file is empty (0 bytes), so its save was interrupted; "
            "copy or save the checkpoint again"
        )
    with path.open("rb") as handle:
        head = handle.read(8)
    try:
        obj = _load_weights_only(path)
    except pickle.UnpicklingError as err:
        refused = _REFUSED_GLOBAL.search(str(err))
        if refused:
            raise AblateError(
                f"{path}: holds a pickled Python object ({refused.group(1)}) that safe loading "
                "(weights_only=True) refuses, and ablate never runs pickled code; in a "
                f"trusted session re-save only the weights: {_SAVE_WEIGHTS}"
            ) from err
        raise _unreadable(path, size, head, err) from err
    except Exception as err:  # torch raises many types for damaged files; all mean the same
        raise _unreadable(path, size, head, err) from err
    return unwrap_state_dict(obj, str(path))


def _load_weights_only(path: Path) -> Any:
    """``torch.load(weights_only=True)``, with every class the file names allowed only as
    an inert ``Unpickled`` record (torch blocks os/sys globals before this applies)."""
    with warnings.catch_warnings():
        # torch warns about pickle protocols it may not support; failures raise anyway.
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            try:
                names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
            except Exception:  # not a zip archive: keep the first refusal
                names = []
            if not names:
                raise
        stand_ins = [(type(f"Unpickled[{name}]", (Unpickled,), {"pickled_name": name}), name)
                     for name in names]
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True)


def _unreadable(path: Path, size: int, head: bytes, err: Exception) -> AblateError:
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    reason = reason.split(". ")[0][:120] or type(err).__name__
    kind = "a damaged PyTorch zip archive" if head.startswith(ZIP_MAGIC) else (
        f"not a readable torch.save file (it starts with bytes {head[:4].hex()})"
    )
    return AblateError(
        f"{path}: {kind} ({size} bytes; torch: {reason}); the file is truncated or corrupt: "
        "copy it again from its source and compare its sha256"
    )


def unwrap_state_dict(obj: object, source: str) -> ResearchFile:
    """Accept a plain state dict or one wrapped under ``WRAPPER_KEYS``; strip ``PREFIXES``;
    collect the configs stored beside a wrapped state dict."""
    name = Path(source).name
    if isinstance(obj, Unpickled):
        raise AblateError(
            f"{source}: holds a pickled {obj.pickled_name} object, not a state dict; ablate "
            f"never runs pickled code: in a trusted session re-save {_SAVE_WEIGHTS}"
        )
    if not isinstance(obj, Mapping):
        raise AblateError(
            f"{source}: holds a {type(obj).__name__}, not a state dict; save the weights "
            f"with {_SAVE_WEIGHTS}"
        )
    found = ResearchFile(state={})
    state: Mapping = obj
    if not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            pickled = next(((k, v) for k, v in obj.items() if k in WRAPPER_KEYS
                            and isinstance(v, Unpickled)), None)
            if pickled is not None:
                raise AblateError(
                    f"{source}: '{pickled[0]}' holds a pickled {pickled[1].pickled_name} "
                    f"object, not a state dict; in a trusted session re-save {_SAVE_WEIGHTS}"
                )
            keys = ", ".join(repr(k) for k in list(obj)[:6]) or "none"
            raise AblateError(
                f"{source}: a dict with keys {keys} but no state dict; expected tensors by "
                f"parameter name, or a state dict under one of {', '.join(WRAPPER_KEYS)}"
            )
        state = obj[wrapper]
        found.notes.append(f"state dict read from the '{wrapper}' entry of the checkpoint dict")
        found.configs = embedded_configs(obj, wrapper, name)
    if not state:
        raise AblateError(f"{source}: the state dict is empty; pass a trained checkpoint")
    bad = next((k for k in state if not isinstance(k, str)), None)
    if bad is not None:
        raise AblateError(f"{source}: state-dict key {bad!r} is not a string; re-save the weights")
    result = dict(state)
    stripped = True
    while stripped:  # DDP around torch.compile gives "module._orig_mod."
        stripped = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in result):
                result = {k[len(prefix):]: v for k, v in result.items()}
                found.notes.append(f"stripped the '{prefix}' prefix from every key")
                stripped = True
    found.state = result
    return found


def embedded_configs(obj: Mapping, wrapper: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, plain values) of each config in a wrapped checkpoint dict: the ``CONFIG_KEYS``
    entries (dicts, or the recorded fields of a Namespace/dataclass), their ``MODEL_TABLES``
    sub-tables, and the dict's own plain top-level values (``{"model": sd, "n_heads": 8}``)."""
    configs: list[tuple[str, dict[str, Any]]] = []
    top = {k: v for k, v in obj.items() if isinstance(k, str) and k != wrapper
           and isinstance(v, (str, int, float, bool))}
    if top:
        configs.append((f"the checkpoint dict in {name}", top))
    for key in CONFIG_KEYS:
        values = _plain_mapping(obj.get(key))
        if values is None:
            continue
        configs.append((f"'{key}' in {name}", values))
        for table in MODEL_TABLES:
            inner = _plain_mapping(values.get(table))
            if inner is not None:
                configs.append((f"'{key}.{table}' in {name}", inner))
    return configs


def _plain_mapping(value: Any) -> dict[str, Any] | None:
    if isinstance(value, Unpickled):
        value = value.state
    if not isinstance(value, Mapping):
        return None
    return {str(k): v for k, v in value.items()}


@dataclass(frozen=True)
class Shapes:
    """What a Matrix Thinker state dict reveals about its model (spec §3.6)."""

    mat_dim: int
    vocab_size: int
    max_len: int
    n_layers: int
    head: str  # "collapse" when collapse_W is present, else "multiprobe"
    n_probes: int | None  # rows of output_head.U; None for the collapse head
    embedding_width: int  # embed_u.weight.shape[1]: r * d for the rank-r embeddings
    has_pair: bool  # embed_pair.weight present: the pairwise embedding

    def describe(self, key: str) -> str:
        """Where a value came from, for error messages."""
        return {
            "mat_dim": f"d={self.mat_dim} (embed_u.weight is ({self.vocab_size}, "
                       f"{self.embedding_width}), pos_u.weight ({self.max_len}, {self.mat_dim}))",
            "vocab_size": f"vocab_size={self.vocab_size} (rows of embed_u.weight)",
            "max_len": f"max_len={self.max_len} (rows of pos_u.weight)",
            "n_layers": f"n_layers={self.n_layers} (layers.0 .. layers.{self.n_layers - 1})",
            "n_probes": f"n_probes={self.n_probes} (rows of output_head.U)",
            "head": f"head={self.head} (collapse_W is "
                    f"{'present' if self.head == 'collapse' else 'absent'})",
        }[key]


def infer_shapes(state: Mapping[str, torch.Tensor], source: str) -> Shapes:
    """Read d, V, P, NL, K, the head type and the embedding width from tensor shapes."""
    for key in ("embed_u.weight", "pos_u.weight"):
        if key not in state:
            first = ", ".join(shown(k) for k in list(state)[:3])
            if any(k.startswith(("gpt2.", "bottleneck.")) for k in state):
                raise AblateError(
                    f"{source}: a matrix-CODI checkpoint (keys gpt2.*, bottleneck.*), not a "
                    f"Matrix Thinker; inspect it with: ablate codi inspect {source} --kind "
                    "research --tokenizer GPT2_DIR"
                )
            raise AblateError(
                f"{source}: not a Matrix Thinker state dict: no '{key}' (first keys: {first}); "
                "pass a best.pt written by the research scripts (spec variants a-d)"
            )
        if state[key].dim() != 2:
            raise AblateError(
                f"{source}: '{key}' has shape {tuple(state[key].shape)}, expected (rows, d); "
                "the file is not a Matrix Thinker checkpoint"
            )
    vocab_size, width = state["embed_u.weight"].shape
    max_len, d = state["pos_u.weight"].shape
    if width % d:
        raise AblateError(
            f"{source}: embed_u.weight is {(vocab_size, width)} but pos_u.weight gives d={d}; "
            "the token embedding width must be a multiple of d: the file is inconsistent"
        )
    layers = {int(m.group(1)) for k in state if (m := _LAYER_KEY.match(k))}
    if not layers:
        raise AblateError(
            f"{source}: no 'layers.N.*' keys, so the model has no thinking layers; "
            "pass a complete Matrix Thinker checkpoint"
        )
    head = "collapse" if "collapse_W" in state else "multiprobe"
    n_probes = None
    if head == "multiprobe":
        probe = state.get("output_head.U")
        if probe is None or probe.dim() != 2:
            raise AblateError(
                f"{source}: neither 'collapse_W' nor a 2-D 'output_head.U' is present, so the "
                "output head is unknown; pass a complete Matrix Thinker checkpoint"
            )
        n_probes = int(probe.shape[0])
    return Shapes(
        mat_dim=int(d), vocab_size=int(vocab_size), max_len=int(max_len),
        n_layers=max(layers) + 1, head=head, n_probes=n_probes,
        embedding_width=int(width), has_pair="embed_pair.weight" in state,
    )
