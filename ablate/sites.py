"""The names experiment files use for where an intervention acts (hook sites) and how a
random projection multiplies (sides): plain strings, checked without torch or a model, so
``ablate validate --no-checkpoints`` stays fast. ``ablate.model.hooks`` fires the Matrix
Thinker's names; a CODI model (``ablate.codi``) fires ``latent.{j}`` as it produces each
latent thought Z_j (j from 0), so a hook's output is the thought the model reads next.

    >>> resolve_site("iter.3")
    'iter.3.hook_out'
    >>> hook_names(1, 1)[:2]
    ['embed.hook_out', 'iter.1.layer.0.attn.hook_out']
    >>> resolve_site("latent"), latent_hook_names(2)
    ('latent.*', ['latent.0', 'latent.1'])
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from ablate.errors import AblateError

# Sides of a random rank-k projection: Q Qᵀ M ("columns") or M Q Qᵀ ("rows").
SIDES = ("columns", "rows")

# Site aliases accepted anywhere a hook name is (experiment configs use these).
SITE_ALIASES = {
    "head_input": "head.hook_in",
    "pre_norm": "final_norm.hook_in",
    "embed": "embed.hook_out",
}
_ITER_ALIAS = re.compile(r"^iter\.(\d+|\*)(?:\.layer\.(\d+|\*))?$")
# A CODI model's latent thoughts: "latent" (every one) or "latent.j" (thought j, from 0).
LATENT_SITE = "latent"
_LATENT = re.compile(r"^latent(?:\.(\d+|\*))?$")
_NAME = re.compile(
    r"^(embed\.hook_out|final_norm\.hook_in|head\.hook_in"
    r"|iter\.(\d+|\*)\.hook_out"
    r"|iter\.(\d+|\*)\.layer\.(\d+|\*)\.(attn\.)?hook_out)$"
)


def hook_names(n_iterations: int, n_layers: int) -> list[str]:
    """Every hook point of one forward pass, in the order they fire."""
    names = ["embed.hook_out"]
    for t in range(1, n_iterations + 1):
        for layer in range(n_layers):
            names += [f"iter.{t}.layer.{layer}.attn.hook_out", f"iter.{t}.layer.{layer}.hook_out"]
        names.append(f"iter.{t}.hook_out")
    return names + ["final_norm.hook_in", "head.hook_in"]


def latent_hook_names(n_latents: int) -> list[str]:
    """The hook points of a CODI model's latent loop with ``n_latents`` thoughts."""
    return [f"latent.{j}" for j in range(n_latents)]


def is_latent_site(name: str) -> bool:
    """Whether ``name`` (an alias or a hook name) is a CODI latent site."""
    return _LATENT.match(name) is not None


def resolve_site(site: str, n_layers: int | None = None) -> str:
    """Map an alias (``head_input``, ``iter.3``, ``iter.3.layer.1``, ``latent``) to a hook
    name or pattern, and check it is well formed (and the layer exists when ``n_layers``
    given)."""
    latent = _LATENT.match(site)
    if latent:
        return f"latent.{latent.group(1) or '*'}"
    name = SITE_ALIASES.get(site)
    if name is None:
        m = _ITER_ALIAS.match(site)
        if m:
            layer = f".layer.{m.group(2)}" if m.group(2) else ""
            name = f"iter.{m.group(1)}{layer}.hook_out"
        else:
            name = site
    m = _NAME.match(name)
    if not m and "*" in name:
        # A free glob (e.g. "*" or "*.attn.hook_out") is fine if it can match something.
        example = hook_names(2, n_layers or 2)
        if any(fnmatchcase(n, name) for n in example):
            return name
    if not m:
        raise AblateError(
            f"Unknown hook site '{site}'. Use one of {sorted(SITE_ALIASES)}, 'iter.T', "
            "'iter.T.layer.L' (T from 1, L from 0; '*' matches all), a full hook name "
            "such as 'iter.2.layer.0.attn.hook_out', or for CODI models 'latent' or "
            "'latent.j' (j from 0)"
        )
    if n_layers is not None and m.group(4) not in (None, "*") and int(m.group(4)) >= n_layers:
        raise AblateError(
            f"hook site '{site}' names layer {m.group(4)} but the model has {n_layers} "
            f"layers (0..{n_layers - 1}): pick an existing layer"
        )
    if m.group(2) == "0" or m.group(3) == "0":
        raise AblateError(f"hook site '{site}': iterations count from 1; use 'embed' for M(0)")
    return name
