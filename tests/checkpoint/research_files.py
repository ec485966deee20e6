"""Checkpoint files for the tests: tiny real models saved the way the research scripts save
them (``torch.save(model.state_dict(), "best.pt")``), sidecars, and damaged files.

``BAD_INPUTS`` maps a case name to a builder ``(tmp_path) -> (path, overrides)`` for input
that must fail with a one-line ``AblateError`` naming ``path`` (or, where
``BAD_INPUT_NAMES`` says so, the sidecar file or flag value at fault); the checkpoint
tests and the CLI tests share it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ablate.model import MatrixThinkerConfig
from tests.conftest import tiny_model
from tests.model.reference_cases import CASES

REFERENCE_CASES = list(CASES)  # the research reference cases (tests/model/reference_cases.py)
# What a tiny model's weights cannot say (d = 4 has no research defaults to assume).
TINY_SIDECAR = {"n_heads": 2, "attention": "frobenius"}


def write_research(
    folder: Path,
    state: dict[str, torch.Tensor] | object,
    *,
    name: str = "best.pt",
    sidecar: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    script: str | None = None,
) -> Path:
    """Save ``state`` as ``folder/name`` with optional config.json / results.json / script.py."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    torch.save(state, path)
    if sidecar is not None:
        (folder / "config.json").write_text(json.dumps(sidecar))
    if results is not None:
        (folder / "results.json").write_text(json.dumps(results))
    if script is not None:
        (folder / "script.py").write_text(script)
    return path


def tiny_research(folder: Path, seed: int = 0, sidecar: dict | None = None, **overrides) -> Path:
    """A tiny model's state dict as a research best.pt with a sidecar giving its n_heads and
    attention (``sidecar={}`` writes one that states neither)."""
    model = tiny_model(seed, **overrides)
    stated = {"n_heads": model.config.n_heads, "attention": model.config.attention}
    return write_research(folder, model.state_dict(),
                          sidecar=stated if sidecar is None else sidecar)


def spec_state_dict(d: int, n_layers: int, n_probes: int, vocab_size: int,
                    max_len: int) -> dict[str, torch.Tensor]:
    """A round-2 state dict with the spec §3.5 keys and shapes (zeros; I the identity),
    written from the spec table rather than from the model code."""
    state = {name: torch.zeros(rows, d) for name, rows in
             (("embed_u.weight", vocab_size), ("embed_v.weight", vocab_size),
              ("pos_u.weight", max_len), ("pos_v.weight", max_len))}
    for layer in range(n_layers):
        attn, think = f"layers.{layer}.attn.", f"layers.{layer}.think."
        state[attn + "norm.weight"] = torch.ones(d, d)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[f"{attn}{proj}.A"], state[f"{attn}{proj}.B"] = torch.eye(d), torch.eye(d)
        state[think + "key_col"], state[think + "val_col"] = torch.zeros(d, 1), torch.zeros(d, 1)
        for gate in ("gate_mult", "gate_write"):
            state[f"{think}{gate}_W"] = torch.zeros(d, d)
            state[f"{think}{gate}_bias"] = torch.tensor(-2.0)
        state[think + "scale"], state[think + "I"] = torch.tensor(0.1), torch.eye(d)
        state[think + "norm.weight"] = torch.ones(d, d)
        for proj in ("delta_gate", "delta_value", "delta_up", "gamma_gate", "gamma_value",
                     "gamma_up"):
            state[f"{think}{proj}.A"], state[f"{think}{proj}.B"] = torch.eye(d), torch.eye(d)
    state["final_norm.weight"] = torch.ones(d, d)
    state["output_head.U"] = torch.zeros(n_probes, d)
    state["output_head.V"] = torch.zeros(n_probes, d)
    state["output_head.out.weight"] = torch.zeros(vocab_size, n_probes)
    return state


def spec_param_count(config: MatrixThinkerConfig) -> int:
    """Trainable parameters by the spec §5 formula (independent of the model code)."""
    d, V, P, NL, K = (config.mat_dim, config.vocab_size, config.max_len, config.n_layers,
                      config.n_probes)
    head = d * d + d * V if config.head == "collapse" else 2 * K * d + K * V
    return 2 * V * d + 2 * P * d + NL * (24 * d * d + 2 * d + 3) + d * d + head


def max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """The reference README's criterion: max|a - b| / max(1, max|b|)."""
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def numpy_effective_rank(M: np.ndarray) -> np.ndarray:
    """exp(entropy of s / sum s) per matrix, float64, singular values clamped at 1e-10."""
    s = np.maximum(np.linalg.svd(M.astype(np.float64), compute_uv=False), 1e-10)
    p = s / s.sum(-1, keepdims=True)
    return np.exp(-(p * np.log(p)).sum(-1))


# -- bad input ----------------------------------------------------------------------------


def _real_bytes(tmp_path: Path) -> bytes:
    return tiny_research(tmp_path / "good").read_bytes()


def _truncated(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "truncated.pt"
    path.write_bytes(_real_bytes(tmp_path)[:100])
    return path, {}


def _half(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "half.pt"
    data = _real_bytes(tmp_path)
    path.write_bytes(data[: len(data) // 2])
    return path, {}


def _random_bytes(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path, {}


def _empty(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    return path, {}


def _whole_pickled_model(tmp_path: Path) -> tuple[Path, dict]:
    return write_research(tmp_path / "pickled", tiny_model(), sidecar=TINY_SIDECAR), {}


def _blocked_global(tmp_path: Path) -> tuple[Path, dict]:
    state = tiny_model().state_dict()
    return write_research(tmp_path / "blocked", {"model": state, "hook": os.system},
                          sidecar=TINY_SIDECAR), {}


def _nan_weight(tmp_path: Path) -> tuple[Path, dict]:
    state = tiny_model().state_dict()
    state["layers.1.think.gate_mult_W"][0, 0] = float("nan")
    return write_research(tmp_path / "nan", state, sidecar=TINY_SIDECAR), {}


def _inf_weight(tmp_path: Path) -> tuple[Path, dict]:
    state = tiny_model().state_dict()
    state["output_head.V"][1, 2] = float("-inf")
    return write_research(tmp_path / "inf", state, sidecar=TINY_SIDECAR), {}


def _sidecar_disagrees(tmp_path: Path) -> tuple[Path, dict]:
    return tiny_research(tmp_path / "mismatch", sidecar={"mat_dim": 32, "n_heads": 2}), {}


def _infinite_n_heads_in_sidecar(tmp_path: Path) -> tuple[Path, dict]:
    return tiny_research(tmp_path / "inf_heads", sidecar={**TINY_SIDECAR,
                                                          "n_heads": float("inf")}), {}


def _dropout_out_of_range_in_sidecar(tmp_path: Path) -> tuple[Path, dict]:
    return tiny_research(tmp_path / "dropout", sidecar={**TINY_SIDECAR, "dropout": 1.5}), {}


def _unknown_variant_in_sidecar(tmp_path: Path) -> tuple[Path, dict]:
    return tiny_research(tmp_path / "variant",
                         sidecar={"variant": "round3_multiprobe", "n_heads": 2}), {}


def _unknown_variant_flag(tmp_path: Path) -> tuple[Path, dict]:
    return tiny_research(tmp_path / "flag"), {"variant": "attn3d_multiprob"}


def _missing(tmp_path: Path) -> tuple[Path, dict]:
    return tmp_path / "no-such-checkpoint", {}


def _neither(tmp_path: Path) -> tuple[Path, dict]:
    folder = tmp_path / "neither"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_SIDECAR))
    (folder / "notes.txt").write_text("not a checkpoint")
    return folder, {}


def _missing_keys(tmp_path: Path) -> tuple[Path, dict]:
    state = tiny_model().state_dict()
    del state["layers.0.attn.q_proj.A"], state["final_norm.weight"]
    return write_research(tmp_path / "missing_keys", state, sidecar=TINY_SIDECAR), {}


def _control_character_in_key(tmp_path: Path) -> tuple[Path, dict]:
    # A flipped byte can turn a '.' of a key into a newline; the error must stay one line.
    state = tiny_model().state_dict()
    state["layers.0.attn.q_proj\nA"] = state.pop("layers.0.attn.q_proj.A")
    return write_research(tmp_path / "control", state, sidecar=TINY_SIDECAR), {}


def _wrong_shape(tmp_path: Path) -> tuple[Path, dict]:
    state = tiny_model().state_dict()
    state["layers.0.think.scale"] = state["layers.0.think.scale"].reshape(1)  # (1,) not ()
    return write_research(tmp_path / "wrong_shape", state, sidecar=TINY_SIDECAR), {}


BAD_INPUTS: dict[str, Callable[[Path], tuple[Path, dict]]] = {
    "missing_path": _missing,
    "truncated_100_bytes": _truncated,
    "truncated_half": _half,
    "random_bytes": _random_bytes,
    "empty_file": _empty,
    "whole_pickled_model": _whole_pickled_model,
    "pickled_os_function": _blocked_global,
    "nan_weight": _nan_weight,
    "inf_weight": _inf_weight,
    "sidecar_shape_disagrees": _sidecar_disagrees,
    "unknown_variant_in_sidecar": _unknown_variant_in_sidecar,
    "infinite_n_heads_in_sidecar": _infinite_n_heads_in_sidecar,
    "dropout_out_of_range_in_sidecar": _dropout_out_of_range_in_sidecar,
    "unknown_variant_flag": _unknown_variant_flag,
    "directory_with_neither": _neither,
    "missing_keys": _missing_keys,
    "wrong_shape": _wrong_shape,
    "control_character_in_key": _control_character_in_key,
}
# The name an error must mention when it is not the checkpoint file itself.
BAD_INPUT_NAMES = {
    "unknown_variant_in_sidecar": "config.json",
    "infinite_n_heads_in_sidecar": "config.json",
    "unknown_variant_flag": "attn3d_multiprob",
}


def expected_name(case: str, path: Path) -> str:
    return BAD_INPUT_NAMES.get(case, path.name)
