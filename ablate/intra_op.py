"""``torch_threads(n)``: torch's intra-op thread count for a block, restored after it.

Its own module, free of ablate's other imports, so that the model layers (which keep a
few operations on one thread, see ``ablate.model.attention``) and the thread policy
(``ablate.executors.threads``) can both use it.

    >>> with torch_threads(1):  # doctest: +SKIP
    ...     model(ids)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, then restore the setting."""
    import torch

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
