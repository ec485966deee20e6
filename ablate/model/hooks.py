"""Named hook points for a weight-tied, iterated model.

The same block runs T times, so a hook point is named by iteration as well as layer
(``iter.3.layer.5.attn.hook_out``): caching or editing one call never overwrites another.
Hooks attach only inside ``with model.hooks({...}):`` and are removed in ``finally``,
also after an exception. With nothing attached the forward pass skips every hook point
(one truth test per point), so it is bit-identical to a model without hook points.

    >>> with model.hooks({"head.hook_in": lambda x, name: x * 0}):   # doctest: +SKIP
    ...     logits = model(ids).logits
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from fnmatch import fnmatchcase

import torch

# The names' grammar lives in ablate.sites (no torch), so configs are checked without a
# model; it is re-exported here, where the hook points are.
from ablate.sites import SITE_ALIASES, hook_names, resolve_site

__all__ = ["SITE_ALIASES", "HookFn", "HookedMixin", "hook_names", "resolve_site"]

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]


class HookedMixin:
    """Adds ``hooks()`` and ``_hook()`` to a module; the forward calls ``_hook`` at each
    point only when ``self._hook_table`` is non-empty."""

    _hook_table: list[tuple[str, HookFn]]

    def _init_hooks(self) -> None:
        self._hook_table = []
        self._hook_cache: dict[str, list[HookFn]] = {}

    @contextmanager
    def hooks(self, hooks: Mapping[str, HookFn]) -> Iterator[None]:
        """Attach ``{name_or_pattern: fn}`` for the duration of the block (nestable)."""
        n_layers = getattr(getattr(self, "config", None), "n_layers", None)
        entries = [(resolve_site(site, n_layers), fn) for site, fn in hooks.items()]
        self._hook_table.extend(entries)
        self._hook_cache.clear()
        try:
            yield
        finally:
            for entry in entries:
                self._hook_table.remove(entry)
            self._hook_cache.clear()

    def _hooks_at(self, name: str) -> list[HookFn]:
        fns = self._hook_cache.get(name)
        if fns is None:
            fns = [fn for pattern, fn in self._hook_table if fnmatchcase(name, pattern)]
            self._hook_cache[name] = fns
        return fns

    def has_hook(self, name: str) -> bool:
        """Whether a hook is attached at the point ``name``."""
        return bool(self._hook_table) and bool(self._hooks_at(name))

    def _hook(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for fn in self._hooks_at(name):
            out = fn(x, name)
            if out is not None:
                x = out
        return x
