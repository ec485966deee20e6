"""The one loader of CODI models: a native directory (``ablate codi train``) or a research
``.pt`` file (``run_matrix_codi.py``), told apart by the path.

A research file cannot state its GPT-2 tokenizer, base config or (sometimes) head count:
``tokenizer``, ``base`` and ``n_heads`` give them (``[[checkpoints]] overrides`` of an
experiment, or ``ablate codi`` flags); a native directory holds everything and takes none.

    >>> codi = load_codi_model("checkpoints/codi-synthetic")                    # doctest: +SKIP
    >>> codi = load_codi_model("best.pt", tokenizer="/models/gpt2")             # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate.errors import AblateError

FORMATS = ("native", "research")
CODI_FILE = "codi.json"  # what marks a native CODI directory (ablate.codi.saving)


def codi_format(path: str | Path) -> str:
    """"native" for a directory (or a file in a directory holding ``codi.json``),
    "research" for a ``.pt`` or any other file; reads no weights."""
    source = Path(path)
    if source.is_dir():
        return "native"
    if source.suffix != ".pt" and (source.parent / CODI_FILE).is_file():
        return "native"
    return "research"


def load_codi_model(path: str | Path, *, kind: str | None = None, tokenizer: str | None = None,
                    base: str | None = None, n_heads: int | None = None,
                    device: str = "cpu") -> Any:
    """A ``NativeCodi`` or ``ResearchCodi`` in eval mode on ``device``. ``kind`` ("native"
    or "research"), when given, must agree with the path."""
    found = codi_format(path)
    if kind is not None and kind not in FORMATS:
        raise AblateError(f"CODI checkpoint kind '{kind}' is not one of {', '.join(FORMATS)}")
    if kind is not None and kind != found:
        what = "a directory" if found == "native" else "a file"
        raise AblateError(f"{path} is {what}, so a {found} CODI checkpoint, not {kind}: native "
                          "checkpoints are directories, research ones .pt files")
    if found == "native":
        given = [name for name, value in (("tokenizer", tokenizer), ("base", base),
                                          ("n_heads", n_heads)) if value is not None]
        if given:
            raise AblateError(f"{path} is a native CODI checkpoint, which holds its tokenizer "
                              f"and config; remove {', '.join(given)} (for research .pt files)")
        from ablate.codi.saving import load_codi

        return load_codi(path, device=device)
    from ablate.codi.research import load_research_codi

    return load_research_codi(path, tokenizer=tokenizer, base=base, n_head=n_heads,
                              device=device)


def model_kind(model: Any) -> str:
    """"native" or "research" for a loaded CODI model."""
    from ablate.codi.research import ResearchCodi

    return "research" if isinstance(model, ResearchCodi) else "native"


def model_iterations(model: Any) -> int:
    """T of a loaded CODI model: a native model's thinker iterations; a research model
    runs its bottleneck's thinking layer once (0 without one)."""
    settings = getattr(model, "settings", None)
    if settings is not None:
        return int(settings.n_iterations)
    return int(getattr(getattr(model, "bottleneck", None), "thinker", None) is not None)
