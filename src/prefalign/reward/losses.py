"""Per-example losses: Bradley-Terry for pairs, masked multi-attribute regression for ratings (eq. 3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .data import PreferenceExample
from .model import RewardModel, predictions


def bradley_terry(margins: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(r(chosen) - r(rejected)) per pair."""
    return F.softplus(-margins)


def masked_regression(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the attributes each example's source rates, per example ``(R,)``."""
    return ((pred - target) ** 2 * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def example_losses(
    model: RewardModel, examples: list[PreferenceExample], params: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """l_i for every example of a mixed batch, in the batch's order ``(B,)``."""
    margins, rated = predictions(model, examples, params)
    losses: list[torch.Tensor | None] = [None] * len(examples)
    pair_at = [i for i, ex in enumerate(examples) if ex.is_pair]
    rated_at = [i for i, ex in enumerate(examples) if not ex.is_pair]
    if pair_at:
        for i, value in zip(pair_at, bradley_terry(margins)):
            losses[i] = value
    if rated_at:
        target = torch.tensor([examples[i].ratings for i in rated_at], device=rated.device)
        mask = torch.tensor([examples[i].mask for i in rated_at], device=rated.device)
        for i, value in zip(rated_at, masked_regression(rated, target, mask)):
            losses[i] = value
    return torch.stack(losses)


def weighted_loss(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L_tr(w, theta; batch) = (1/B) sum_i w_i l_i(theta) (eq. 3.7's lower level on a mini-batch)."""
    return (weights * losses).mean()
