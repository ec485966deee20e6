"""CODI losses: masked next-token cross-entropy and the std-normalised distillation term.

``L = alpha·CE_teacher + beta·CE_student + gamma·KD`` (spec §9). KD compares the
student's states at its cue with the teacher's detached states at the teacher's cue, one
term per recorded site (every (iteration, layer) block output of a Matrix Thinker, every
layer of GPT-2): ``SmoothL1(s, t) / max(std(t), 1e-6)``, std unbiased over all B × d × d
teacher entries of that site, averaged over sites. Padding never enters any term: the
research script's student CE also scores padded tail positions (their label is the pad/EOS
id, spec §9 "quirk"); that is deliberately not replicated. The research distils with
mean |s − t|; SmoothL1 (the CODI paper's choice) equals it minus 0.5 beyond |s − t| = 1.

    >>> loss = masked_cross_entropy(logits, ids, target_mask(mask, start))   # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

STD_FLOOR = 1e-6  # spec §9: max(std(t), 1e-6)


def masked_cross_entropy(logits: torch.Tensor, ids: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE over the positions where ``targets`` (B, L) is True.

    ``logits`` (B, L, V) at position i score token ``ids[:, i + 1]``. Returns 0 (with a
    graph) when no position is a target, so an all-padding batch cannot produce NaN.
    """
    B, L, V = logits.shape
    if L < 2:
        return logits.sum() * 0.0
    scored = targets[:, :-1]  # (B, L-1): the last position has no next token
    if not bool(scored.any()):
        return logits.sum() * 0.0
    chosen = logits[:, :-1][scored]  # (N, V)
    labels = ids[:, 1:][scored]  # (N,)
    return F.cross_entropy(chosen.float(), labels)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, L-1) log p(ids[:, i+1] | prefix up to i) from logits (B, L, V), in float32."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)


def distillation_loss(student: list[torch.Tensor], teacher: list[torch.Tensor]) -> torch.Tensor:
    """Mean over sites of SmoothL1(s, t.detach()) / max(std(t), 1e-6).

    ``student[i]`` and ``teacher[i]`` are the states of site i at the cue, (B, ...) each;
    the teacher side never receives a gradient. Identical states give exactly 0.
    """
    if len(student) != len(teacher) or not student:
        raise ValueError(f"distillation needs matching non-empty site lists, got "
                         f"{len(student)} and {len(teacher)}")
    terms = []
    for s, t in zip(student, teacher, strict=True):
        t = t.detach().float()
        scale = t.std().clamp_min(STD_FLOOR) if t.numel() > 1 else t.new_tensor(1.0)
        terms.append(F.smooth_l1_loss(s.float(), t) / scale)
    return torch.stack(terms).mean()
