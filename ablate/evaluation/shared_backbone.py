"""One backbone pass for every condition that acts only after the thinking blocks.

Interventions at ``pre_norm`` and ``head_input`` change nothing the blocks compute, so
the states M(0..T) and the unablated head input Y are the same under all of them. The
evaluation runs the backbone once per batch (``head=False``), keeps M(T) and Y at the
positions it needs, decomposes each once (``projections.decompose``) and derives every
condition's head input from them; only the cheap head runs per condition. The result
equals running each condition through its hooks (tests/evaluation/test_shared_backbone.py).

    >>> ends = BackboneEnds(pre_norm=states[-2][rows, cols],
    ...                     head_input=states[-1][rows, cols])                   # doctest: +SKIP
    >>> Y = ends.condition_head_input(condition, model.final_norm, eval_seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ablate.interventions import Condition
from ablate.projections import LowRankBasis, decompose
from ablate.rank import effective_rank, effective_rank_of_spectrum

PRE_NORM = "final_norm.hook_in"
HEAD_INPUT = "head.hook_in"


def split_conditions(
    conditions: Sequence[Condition], enabled: bool = True
) -> tuple[list[int], list[int]]:
    """(indices served by one shared backbone pass, indices that need their own pass)."""
    if not enabled:
        return [], list(range(len(conditions)))
    shared = [i for i, c in enumerate(conditions) if c.after_backbone]
    separate = [i for i, c in enumerate(conditions) if not c.after_backbone]
    return shared, separate


@dataclass
class BackboneEnds:
    """M(T) and Y = final_norm(M(T)) of one unhooked pass at N positions, each (N, d, d),
    with their decompositions computed on first use."""

    pre_norm: torch.Tensor
    head_input: torch.Tensor
    _bases: dict[str, LowRankBasis] = field(default_factory=dict)
    _unablated_erank: torch.Tensor | None = None

    def _basis(self, site: str, condition: Condition) -> LowRankBasis | None:
        first = next(p for p in condition.interventions if p.hook_name == site)
        if not first.kind.uses_basis or first.is_identity(self.head_input.shape[-1]):
            return None
        if site not in self._bases:
            X = self.pre_norm if site == PRE_NORM else self.head_input
            self._bases[site] = decompose(X)
        return self._bases[site]

    def condition_head_input(
        self,
        condition: Condition,
        final_norm: Callable[[torch.Tensor], torch.Tensor],
        eval_seed: int,
    ) -> torch.Tensor:
        """The head input (N, d, d) under ``condition`` (which must act after the backbone)."""
        assert condition.after_backbone, condition.label
        sites = {p.hook_name for p in condition.interventions}
        if PRE_NORM in sites:
            M = condition.apply_at(PRE_NORM, self.pre_norm, eval_seed,
                                   self._basis(PRE_NORM, condition))
            Y = final_norm(M)
            head_basis = None  # Y differs from the shared one
        else:
            Y = self.head_input
            head_basis = self._basis(HEAD_INPUT, condition) if HEAD_INPUT in sites else None
        return condition.apply_at(HEAD_INPUT, Y, eval_seed, head_basis)

    def head_input_erank(self, condition: Condition, Y: torch.Tensor,
                         eval_seed: int) -> torch.Tensor:
        """Effective rank (N,) float64 on CPU of the head inputs Y (N, d, d) that
        ``condition_head_input`` returned. A condition that is one rank-k cut of the head
        input takes it from the cut's known spectrum (``InterventionKind.spectrum``: the
        top k singular values of the shared decomposition, or those of the k x d matrix
        Qᵀ Y), which agrees with decomposing Y to ~1e-6 relative (float32 round-off of Y)
        at a fraction of the cost; the unablated value is computed once."""
        d = Y.shape[-1]
        parts = condition.interventions
        if condition.identity or all(p.is_identity(d) for p in parts):
            if self._unablated_erank is None:
                self._unablated_erank = effective_rank(self.head_input).cpu()
            return self._unablated_erank
        if len(parts) == 1 and parts[0].hook_name == HEAD_INPUT and parts[0].kind.spectrum:
            part = parts[0]
            spectrum = part.kind.spectrum(part, self.head_input, eval_seed,
                                          self._basis(HEAD_INPUT, condition))
            return effective_rank_of_spectrum(spectrum).cpu()
        return effective_rank(Y).cpu()
