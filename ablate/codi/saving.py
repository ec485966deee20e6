"""Native CODI checkpoints: an ablate checkpoint directory plus the CODI parts.

    directory/
      config.json, model.safetensors, tokenizer.json, ablate_meta.json
                                  the Matrix Thinker (``ablate.checkpoint`` format), so
                                  every ablate command can load the backbone on its own
      codi.json                   {"version": 1, "settings": CodiSettings}
      codi_projection.safetensors the projection Π (``projection.*`` without the prefix)

    >>> save_codi(codi, "checkpoints/codi-synthetic", metadata={"command": "..."})  # doctest: +SKIP
    >>> codi = load_codi("checkpoints/codi-synthetic")                              # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ablate.checkpoint import load_checkpoint, save_checkpoint
from ablate.codi.loading import CODI_FILE
from ablate.codi.native import CodiSettings, NativeCodi, check_specials
from ablate.config import Table, resolve_device
from ablate.errors import AblateError

PROJECTION_FILE = "codi_projection.safetensors"
CODI_FILE_VERSION = 1


def is_codi_checkpoint(path: str | Path) -> bool:
    return (Path(path) / CODI_FILE).is_file()


def save_codi(codi: NativeCodi, directory: str | Path, *, metadata: dict[str, Any]) -> Path:
    """Write ``codi`` to ``directory`` (replacing an earlier ablate checkpoint there)."""
    target = save_checkpoint(codi.thinker, codi.tokenizer, directory,
                             metadata={**metadata, "codi": codi.settings.to_json()})
    state = {k: v.detach().cpu().contiguous() for k, v in codi.projection.state_dict().items()}
    save_file(state, str(target / PROJECTION_FILE), metadata={"format": "pt"})
    body = {"version": CODI_FILE_VERSION, "settings": codi.settings.to_json()}
    (target / CODI_FILE).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    return target


def read_codi_file(directory: Path) -> CodiSettings:
    path = directory / CODI_FILE
    if not path.is_file():
        raise AblateError(
            f"{directory} is not a native CODI checkpoint (no {CODI_FILE}); train one with "
            "`ablate codi train`, or pass a research .pt file"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AblateError(f"{path}: not valid JSON ({err}); re-save the checkpoint") from err
    if not isinstance(data, dict) or data.get("version") != CODI_FILE_VERSION:
        got = data.get("version") if isinstance(data, dict) else data
        raise AblateError(f"{path}: expected {{'version': {CODI_FILE_VERSION}, 'settings': "
                          f"...}}, got version {got!r}; re-save the checkpoint")
    table = Table(data, "", str(path), ("version", "settings"))
    return CodiSettings.from_json(dict(table.get("settings", dict, {})), f"{path}: settings")


def load_codi(path: str | Path, *, device: str | torch.device = "cpu") -> NativeCodi:
    """A ``NativeCodi`` in eval mode from a directory written by ``save_codi``."""
    device = resolve_device(device)
    directory = Path(path)
    if directory.is_file():
        directory = directory.parent
    settings = read_codi_file(directory)
    model, tokenizer, _ = load_checkpoint(directory, device=device)
    assert tokenizer is not None  # load_checkpoint requires one by default
    check_specials(getattr(tokenizer, "specials", ()), f"the tokenizer of {directory}")
    codi = NativeCodi(model, tokenizer, settings)
    weights = directory / PROJECTION_FILE
    if settings.projection != "identity":
        if not weights.is_file():
            raise AblateError(f"{weights} is missing but projection='{settings.projection}' "
                              "has weights; copy the whole checkpoint directory")
        state = load_file(str(weights))
        missing, unexpected = codi.projection.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise AblateError(f"{weights}: projection weights do not match "
                              f"projection='{settings.projection}' (missing {missing}, "
                              f"unexpected {unexpected}); re-save the checkpoint")
    return codi.to(device).eval()
