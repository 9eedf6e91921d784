"""Prior weights (thesis eq. 3.4-3.6) from MC dropout on a briefly trained reward model.

For a pair the prediction is p = sigmoid(r(chosen) - r(rejected)), the probability the model gives the
label, whose value is 1; for a rated response it is each rated attribute's predicted rating (0-4), and u
and q are averaged over the attributes the source rates. The thesis leaves the scale of u and q open (u is
a variance, q a ratio with no bound), so before eq. 3.6 each is standardised over the training set and
clipped to [-clip, clip]; w0 is then normalised to mean 1 (the unweighted loss's scale).
"""

from __future__ import annotations

import torch

from .data import PreferenceExample
from .model import RewardModel, predictions

EPS = 1e-6  # keeps eq. 3.5 finite when every pass predicts the same value


def mc_statistics(samples: torch.Tensor, label: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(u, q) of one example from ``samples`` (N passes, m), its ``label`` (m,) and ``mask`` (m,).

    u = (1/N) sum_n (r_n - mean r)^2 (eq. 3.4); q = |r - mean r| / (max_n r_n - min_n r_n) (eq. 3.5);
    both averaged over the masked-in attributes.
    """
    keep = mask.bool()
    s, y = samples[:, keep].double(), label[keep].double()
    mean = s.mean(0)
    u = ((s - mean) ** 2).mean(0)
    q = (y - mean).abs() / (s.max(0).values - s.min(0).values + EPS)
    return float(u.mean()), float(q.mean())


def standardise(x: torch.Tensor, clip: float) -> torch.Tensor:
    """(x - mean) / std over the set, clipped to [-clip, clip]; a constant set gives zeros."""
    x = x.double()
    std = x.std(unbiased=False)
    z = (x - x.mean()) / std if std > 0 else torch.zeros_like(x)
    return z.clamp(-clip, clip)


def prior_weights(u: torch.Tensor, q: torch.Tensor, gamma: float, clip: float) -> torch.Tensor:
    """w0 = exp(z(u) - gamma z(q)) (eq. 3.6 on standardised, clipped terms), normalised to mean 1."""
    w0 = torch.exp(standardise(u, clip) - gamma * standardise(q, clip))
    return (w0 / w0.mean()).float()


@torch.no_grad()
def mc_dropout_statistics(
    model: RewardModel, examples: list[PreferenceExample], passes: int, batch_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """u and q of every example from ``passes`` stochastic forward passes with dropout on."""
    was_training = model.training
    model.train()
    torch.manual_seed(seed)
    us, qs = [], []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        runs = [predictions(model, batch) for _ in range(passes)]
        pair_i = rated_i = 0
        for ex in batch:
            if ex.is_pair:
                samples = torch.stack([torch.sigmoid(margins[pair_i]) for margins, _ in runs]).view(passes, 1)
                u, q = mc_statistics(samples, torch.ones(1), torch.ones(1))
                pair_i += 1
            else:
                samples = torch.stack([rated[rated_i] for _, rated in runs]).cpu()
                u, q = mc_statistics(samples, torch.tensor(ex.ratings), torch.tensor(ex.mask))
                rated_i += 1
            us.append(u)
            qs.append(q)
    model.train(was_training)
    return torch.tensor(us, dtype=torch.float64), torch.tensor(qs, dtype=torch.float64)
