"""Fuzzing ``ablate convert`` with damaged research checkpoints (seeded, in-process).

Each case takes a reference case (one per variant), saves it in one of the save formats
that state its facts, damages it (truncation, flipped bytes, dropped or renamed keys,
bf16/fp16 tensors, reshaped tensors, non-finite weights, facts dropped from where the
format states them) and runs ``ablate convert``. Invariant: the outcome is either exit 0
with the logits of what the file holds under the case's true config (rebuilt without the
loader, ``truth_model``), or exit 2 with one ``error:`` line; never a traceback, never
exit 0 with other logits. Every source a format reads states the true values, so a
loaded model can only be right or refused.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ablate.checkpoint import load_checkpoint
from ablate.cli import main
from tests.checkpoint.research_files import REFERENCE_CASES
from tests.checkpoint.save_formats import (
    SAVE_FORMATS,
    Case,
    SaveFormat,
    load_case,
    max_rel,
    truth_model,
    write_format,
)

SEED = 20240610
N_CASES = 80
FORMATS = [name for name, fmt in SAVE_FORMATS.items() if fmt.states_facts]

State = dict[str, torch.Tensor]


def _pick(rng: np.random.Generator, keys: list[str]) -> str:
    return keys[int(rng.integers(len(keys)))]


def drop_key(rng: np.random.Generator, state: State) -> tuple[State, str]:
    key = _pick(rng, list(state))
    return {k: v for k, v in state.items() if k != key}, f"dropped {key}"


def rename_key(rng: np.random.Generator, state: State) -> tuple[State, str]:
    key = _pick(rng, list(state))
    same_shape = [k for k, v in state.items() if k != key and v.shape == state[key].shape]
    choice = int(rng.integers(4))
    if choice == 0 and same_shape:  # a swap: valid names, other weights
        other = _pick(rng, same_shape)
        renamed = {other: state[key], key: state[other]}
        return {k: renamed.get(k, v) for k, v in state.items()}, f"swapped {key}, {other}"
    if choice == 1 and key.startswith("layers."):
        new = "layers.7." + key.split(".", 2)[2]  # a layer the config does not have
    else:
        new = f"module.{key}" if choice == 2 else f"{key}_"
    return {(new if k == key else k): v for k, v in state.items()}, f"renamed {key} -> {new}"


def cast(rng: np.random.Generator, state: State) -> tuple[State, str]:
    dtype = torch.bfloat16 if rng.integers(2) else torch.float16
    if rng.integers(2):
        return {k: v.to(dtype) for k, v in state.items()}, f"all {dtype}"
    key = _pick(rng, list(state))
    return {**state, key: state[key].to(dtype)}, f"{key} {dtype}"


def reshape(rng: np.random.Generator, state: State) -> tuple[State, str]:
    key = _pick(rng, list(state))
    value = state[key]
    choice = int(rng.integers(3))
    if choice == 0:
        changed = value.unsqueeze(0)
    elif choice == 1 and value.dim() >= 1 and value.shape[0] > 1:
        changed = value[:-1].clone()
    elif value.dim() == 2:
        changed = value.t().contiguous()  # square: other weights under the same name
    else:
        changed = value.reshape(-1)
    return {**state, key: changed}, f"{key} {tuple(value.shape)} -> {tuple(changed.shape)}"


def non_finite(rng: np.random.Generator, state: State) -> tuple[State, str]:
    key = _pick(rng, [k for k, v in state.items() if v.numel()])
    value = state[key].clone()
    value.view(-1)[int(rng.integers(value.numel()))] = float("nan" if rng.integers(2) else "inf")
    return {**state, key: value}, f"non-finite entry in {key}"


STATE_MUTATIONS: dict[str, Callable[[np.random.Generator, State], tuple[State, str]]] = {
    "drop_key": drop_key, "rename_key": rename_key, "cast": cast, "reshape": reshape,
    "non_finite": non_finite,
}


def truncate(rng: np.random.Generator, data: bytes, fmt: SaveFormat, path: Path) -> bytes:
    return data[: int(rng.integers(1, len(data)))]


def flip_bytes(rng: np.random.Generator, data: bytes, fmt: SaveFormat, path: Path) -> bytes:
    """Flip 1-8 bytes anywhere; where the file itself states facts (an embedded config),
    only inside tensor data, so a flip can change weights but not a stated fact."""
    regions = [(0, len(data))]
    if fmt.embedded:
        with zipfile.ZipFile(path) as archive:  # local header: 30 bytes + name + extra
            regions = [(start, start + info.file_size) for info in archive.infolist()
                       if "/data/" in info.filename and info.file_size
                       for start in [info.header_offset + 30 + len(info.filename.encode())
                                     + len(info.extra)]]
    buffer = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        start, end = regions[int(rng.integers(len(regions)))]
        buffer[int(rng.integers(start, end))] ^= int(rng.integers(1, 256))
    return bytes(buffer)


BYTE_MUTATIONS = {"truncate": truncate, "flip_bytes": flip_bytes}
MUTATIONS = [*STATE_MUTATIONS, *BYTE_MUTATIONS, "drop_fact"]


def build(rng: np.random.Generator, folder: Path, case: Case, fmt: SaveFormat,
          mutation: str) -> tuple[Path, list[str], str]:
    state: State = dict(case.state)
    what = mutation
    drop: tuple[str, ...] = ()
    if mutation in STATE_MUTATIONS:
        state, what = STATE_MUTATIONS[mutation](rng, state)
    elif mutation == "drop_fact":
        drop = (("n_heads",), ("attention",), ("n_heads", "attention"))[int(rng.integers(3))]
        what = f"dropped {' and '.join(drop)} from the format's sources"
    path, flags = write_format(folder, case, fmt, state, drop=drop)
    if mutation in BYTE_MUTATIONS:
        path.write_bytes(BYTE_MUTATIONS[mutation](rng, path.read_bytes(), fmt, path))
    return path, flags, what


def test_damaged_research_checkpoints_load_right_or_fail_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(SEED)
    outcomes: dict[str, int] = {"loaded": 0, "refused": 0}
    for i in range(N_CASES):
        case = load_case(REFERENCE_CASES[i % len(REFERENCE_CASES)])
        fmt = SAVE_FORMATS[FORMATS[int(rng.integers(len(FORMATS)))]]
        mutation = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        folder = tmp_path / f"case{i}"
        path, flags, what = build(rng, folder / "run", case, fmt, mutation)
        label = f"case {i}: {case.variant}, {fmt.name}, {what}"
        code = main(["convert", str(path), str(folder / "native"), *flags])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err, label
        if code == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"{label}: {err}"
            assert not (folder / "native").exists(), label
            outcomes["refused"] += 1
            continue
        assert code == 0, f"{label}: exit {code}: {err}"
        truth = truth_model(case, path, fmt)
        assert truth is not None, f"{label}: loaded a file that holds no such model"
        with torch.no_grad():
            got = load_checkpoint(folder / "native").model(case.ids, 8).logits
            assert max_rel(got, truth(case.ids, 8).logits) <= 1e-6, label
        outcomes["loaded"] += 1
    # Both outcomes occur, so neither branch is vacuous.
    assert outcomes["loaded"] >= 10 and outcomes["refused"] >= 10, outcomes
