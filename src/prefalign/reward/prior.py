"""Prior weights (thesis eq. 3.4-3.6) from MC dropout on a briefly trained reward model.

For a pair the prediction is p = sigmoid(r(chosen) - r(rejected)), the probability the model gives the
label, whose value is 1; for a rated response it is each rated attribute's predicted rating (0-4), and u
and q are averaged over the attributes the source rates. The thesis leaves the scale of u and q open (u is
a variance, q a ratio with no bound), so before eq. 3.6 each is standardised over the training set and
clipped to [-clip, clip]; w0 is then normalised to mean 1 (the unweighted loss's scale).

The readings a user may want instead (docs/methods/dorm.md): q without eq. 3.5's division by the MC range
(``q_form='absolute'``), u with another coefficient than +1 (``u_coefficient``), and eq. 3.6 on the raw
u and q (``scaling='raw'``).
"""

from __future__ import annotations

import torch

from .data import PreferenceExample
from .model import RewardModel, predictions

EPS = 1e-6  # keeps eq. 3.5 finite when every pass predicts the same value
Q_FORMS = ("range", "absolute")
SCALINGS = ("standardise", "raw")


def mc_statistics(
    samples: torch.Tensor, label: torch.Tensor, mask: torch.Tensor, q_form: str = "range"
) -> tuple[float, float]:
    """(u, q) of one example from ``samples`` (N passes, m), its ``label`` (m,) and ``mask`` (m,).

    u = (1/N) sum_n (r_n - mean r)^2 (eq. 3.4); q = |r - mean r| / (max_n r_n - min_n r_n) (eq. 3.5) under
    ``q_form='range'``, q = |r - mean r| under 'absolute'; both averaged over the masked-in attributes.
    """
    keep = mask.bool()
    s, y = samples[:, keep].double(), label[keep].double()
    mean = s.mean(0)
    u = ((s - mean) ** 2).mean(0)
    q = (y - mean).abs()
    if q_form == "range":
        q = q / (s.max(0).values - s.min(0).values + EPS)
    return float(u.mean()), float(q.mean())


def standardise(x: torch.Tensor, clip: float) -> torch.Tensor:
    """(x - mean) / std over the set, clipped to [-clip, clip]; a constant set gives zeros."""
    x = x.double()
    std = x.std(unbiased=False)
    z = (x - x.mean()) / std if std > 0 else torch.zeros_like(x)
    return z.clamp(-clip, clip)


def prior_weights(
    u: torch.Tensor,
    q: torch.Tensor,
    gamma: float,
    clip: float,
    *,
    u_coefficient: float = 1.0,
    scaling: str = "standardise",
) -> torch.Tensor:
    """w0 = exp(c z(u) - gamma z(q)) (eq. 3.6 with c = ``u_coefficient``; the thesis's c is 1), normalised to
    mean 1. ``scaling='standardise'``: z is ``standardise(., clip)``; 'raw': z is the identity (eq. 3.6 on
    u and q as measured). The exponent's maximum is subtracted first (the normalisation cancels it), so
    raw terms cannot overflow or underflow every weight."""
    if scaling == "raw":
        zu, zq = u.double(), q.double()
    else:
        zu, zq = standardise(u, clip), standardise(q, clip)
    exponent = u_coefficient * zu - gamma * zq
    w0 = torch.exp(exponent - exponent.max())
    return (w0 / w0.mean()).float()


@torch.no_grad()
def mc_dropout_samples(
    model: RewardModel, examples: list[PreferenceExample], passes: int, batch_size: int, seed: int
) -> list[torch.Tensor]:
    """Each example's ``passes`` stochastic predictions with dropout on, ``(passes, m)``: a pair's
    sigmoid(margin) (m = 1), a rated response's attribute ratings."""
    was_training = model.training
    model.train()
    torch.manual_seed(seed)
    out = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        runs = [predictions(model, batch) for _ in range(passes)]
        pair_i = rated_i = 0
        for ex in batch:
            if ex.is_pair:
                out.append(torch.stack([torch.sigmoid(margins[pair_i]) for margins, _ in runs]).view(passes, 1).cpu())
                pair_i += 1
            else:
                out.append(torch.stack([rated[rated_i] for _, rated in runs]).cpu())
                rated_i += 1
    model.train(was_training)
    return out


def statistics_of(
    samples: list[torch.Tensor], examples: list[PreferenceExample], q_form: str = "range"
) -> tuple[torch.Tensor, torch.Tensor]:
    """u and q (float64) of every example from its MC samples (``mc_dropout_samples``)."""
    us, qs = [], []
    for s, ex in zip(samples, examples):
        if ex.is_pair:
            u, q = mc_statistics(s, torch.ones(1), torch.ones(1), q_form)
        else:
            u, q = mc_statistics(s, torch.tensor(ex.ratings), torch.tensor(ex.mask), q_form)
        us.append(u)
        qs.append(q)
    return torch.tensor(us, dtype=torch.float64), torch.tensor(qs, dtype=torch.float64)


def mc_dropout_statistics(
    model: RewardModel,
    examples: list[PreferenceExample],
    passes: int,
    batch_size: int,
    seed: int,
    q_form: str = "range",
) -> tuple[torch.Tensor, torch.Tensor]:
    """u and q of every example from ``passes`` stochastic forward passes with dropout on."""
    return statistics_of(mc_dropout_samples(model, examples, passes, batch_size, seed), examples, q_form)
