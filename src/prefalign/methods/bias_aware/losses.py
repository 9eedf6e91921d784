"""The bias balance losses (bias-aware PEFT paper, section 4.2.2, eq. 1-4)."""

from __future__ import annotations

import torch


def contain_means(scores: torch.Tensor, contain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1: per label c, the mean score of c over the batch's samples that contain c (H^C_c) and that do not (H^N_c).

    ``scores`` (B, C) holds each sample's score of every label; ``contain`` (B, C) is its multi-hot
    label set (one-hot for single-label tasks). A label with no sample on a side gets NaN there.
    """
    c = contain.to(scores.dtype)
    n = 1.0 - c
    nan = torch.full_like(scores[0], float("nan"))
    out = []
    for side in (c, n):  # divide by clamped counts, then mask: a bare 0/0 would put NaN into the gradients
        count = side.sum(0)
        out.append(torch.where(count > 0, (scores * side).sum(0) / count.clamp(min=1), nan))
    return out[0], out[1]


def balance_losses(scores: torch.Tensor, contain: torch.Tensor, margin: float | None = None) -> dict[str, torch.Tensor]:
    """L_bal1 (eq. 2) and L_bal2 (eq. 3) of one batch, plus how many labels each term saw.

    L_bal1 = ||H^C - ct_in||_2 + ||H^N - ct_out||_2, the centroids the means of H^C and H^N over the
    labels present on that side (the paper's |Y| read as 'labels in the batch', eq. 1's n).
    L_bal2 = -||H^C - H^N||_2 over labels with samples on both sides; with ``margin`` the norm is capped
    there (its gradient stops), so the term cannot be driven to -inf.
    """
    h_c, h_n = contain_means(scores.float(), contain.bool())
    in_c, in_n = ~torch.isnan(h_c), ~torch.isnan(h_n)
    zero = scores.sum() * 0.0
    bal1 = zero
    for h, present in ((h_c, in_c), (h_n, in_n)):
        if present.any():
            v = h[present]
            bal1 = bal1 + torch.linalg.vector_norm(v - v.mean())
    both = in_c & in_n
    gap = torch.linalg.vector_norm(h_c[both] - h_n[both]) if both.any() else zero
    if margin is not None:
        gap = torch.clamp(gap, max=margin)
    return {"bal1": bal1, "bal2": -gap, "labels_both_sides": both.sum().to(scores.dtype)}


def total_loss(
    lm: torch.Tensor, bal1: torch.Tensor, bal2: torch.Tensor, alpha: float, beta: float, gamma: float
) -> torch.Tensor:
    """Eq. 4: alpha L_LM + beta L_bal1 + gamma L_bal2."""
    return alpha * lm + beta * bal1 + gamma * bal2
