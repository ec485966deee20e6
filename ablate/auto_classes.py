"""``AutoModel.from_pretrained(directory)`` for native checkpoints, after ``import ablate``.

Registering the Matrix Thinker with transformers' ``AutoConfig``/``AutoModel`` means
importing ``ablate.model``, which imports torch and transformers (seconds), while
``import ablate`` must stay light because the CLI starts from it. So ``import ablate``
calls ``register_when_transformers_loads``: with transformers already imported it
imports ``ablate.model`` (whose import registers the classes) at once; otherwise it adds
a one-shot import hook that does so right after transformers' first import completes.

    >>> import ablate                                      # doctest: +SKIP
    >>> from transformers import AutoModel                 # doctest: +SKIP
    >>> AutoModel.from_pretrained("checkpoints/multiprobe-seed0")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing itself costs milliseconds; `import ablate` imports nothing
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

TRIGGER = "transformers"


def register() -> None:
    """Import ``ablate.model``, whose import registers the Auto classes; nothing to do if
    it is imported (or being imported: it registers when it finishes)."""
    if "ablate.model" not in sys.modules:
        importlib.import_module("ablate.model")


class _RegisterAfter:
    """A loader that runs transformers' own loader, then ``register``."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        register()

    def __getattr__(self, name: str) -> Any:  # resources, source, is_package: the real loader's
        return getattr(self.loader, name)


class _TransformersHook:
    """A meta path finder that finds transformers through the other finders, once, and
    wraps its loader."""

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name != TRIGGER:
            return None
        _remove_hook()
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisterAfter(spec.loader)
                return spec
        return None


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TransformersHook)]


def register_when_transformers_loads() -> None:
    """Register now if transformers is imported, else once it is (idempotent)."""
    if TRIGGER in sys.modules:
        register()
    elif not any(isinstance(f, _TransformersHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _TransformersHook())
