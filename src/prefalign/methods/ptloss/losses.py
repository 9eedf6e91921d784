"""PTLoss (thesis chapter 4, eq. 4.7) and the distillation baselines it is compared with (section 4.6.2).

Every loss takes the teacher's class distribution ``teacher`` (B, C) and the student's logits
``logits`` (B, C) and returns the batch mean. Perturbation coefficients ``eps`` broadcast to
(B, C, M): shape (M,) is one set shared by every class, (C, M) one set per class, (B, C, M) one set
per example (the coefficients of eq. 4.10 and 4.16 depend on the probabilities, so they are per
example).
"""

from __future__ import annotations

import torch

TINY = 1e-12  # floor inside logarithms of teacher probabilities (a teacher's exact zeros)


def _xlogx(p: torch.Tensor) -> torch.Tensor:
    return torch.where(p > 0, p * torch.log(p.clamp_min(TINY)), torch.zeros_like(p))


def kl_loss(teacher: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4.3's l_KL(p^t, p^s) = sum_c p^t_c (log p^t_c - log p^s_c), mean over the batch."""
    logp = torch.log_softmax(logits.float(), -1)
    return (_xlogx(teacher) - teacher * logp).sum(-1).mean()


def as_eps(eps, num_classes: int) -> torch.Tensor:
    """Coefficients as a float tensor that broadcasts against (B, C, M): (M,) -> (1, 1, M), (C, M) -> (1, C, M)."""
    eps = torch.as_tensor(eps, dtype=torch.float32)
    if eps.dim() == 1:
        return eps.view(1, 1, -1)
    if eps.dim() == 2:
        if eps.shape[0] != num_classes:
            raise ValueError(f"per-class coefficients have {eps.shape[0]} rows for {num_classes} classes")
        return eps.unsqueeze(0)
    if eps.dim() == 3:
        return eps
    raise ValueError(f"coefficients must have shape (M,), (C, M) or (B, C, M), not {tuple(eps.shape)}")


def perturbation(teacher: torch.Tensor, probs: torch.Tensor, eps) -> torch.Tensor:
    """Eq. 4.7's perturbation per example: sum_c p^t_c sum_{m=1..M} eps_{c,m} (1 - p^s_c)^m, shape (B,)."""
    e = as_eps(eps, teacher.shape[-1]).to(probs.device, probs.dtype)
    orders = torch.arange(1, e.shape[-1] + 1, device=probs.device, dtype=probs.dtype)
    powers = (1 - probs).unsqueeze(-1) ** orders  # (B, C, M)
    return (teacher * (e * powers).sum(-1)).sum(-1)


def pt_loss(teacher: torch.Tensor, logits: torch.Tensor, eps) -> torch.Tensor:
    """Eq. 4.7, l_PT-M = l_KL + sum_c p^t_c sum_m eps_{c,m} (1 - p^s_c)^m, mean over the batch.

    The KL part is exact (not its truncated series), so ``eps = 0`` is the KL loss exactly.
    """
    probs = torch.softmax(logits.float(), -1)
    return kl_loss(teacher, logits) + perturbation(teacher.float(), probs, eps).mean()


def pt_logit_gradient(teacher: torch.Tensor, logits: torch.Tensor, eps) -> torch.Tensor:
    """d l_PT-M / d z per example (not batch-averaged), in closed form.

    With s = softmax(z), h_c = -sum_m m eps_{c,m} (1 - s_c)^{m-1} and a_c = p^t_c s_c h_c:
    grad = s - p^t + a - s * sum_c a_c. With eps = 0 it is KL's s - p^t.
    """
    s = torch.softmax(logits.double(), -1)
    t = teacher.double()
    e = as_eps(eps, t.shape[-1]).double()
    m = torch.arange(1, e.shape[-1] + 1, dtype=torch.float64)
    h = -(m * e * (1 - s).unsqueeze(-1) ** (m - 1)).sum(-1)
    a = t * s * h
    return s - t + a - s * a.sum(-1, keepdim=True)


# -- the eq. 4.10 and 4.16 coefficients: PTLoss covers focal loss and label smoothing ------------


def focal_eps(probs: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """Eq. 4.10: eps_{c,m} = ((1 - p^s_c)^gamma - 1) / m, per example, shape (B, C, M)."""
    m = torch.arange(1, order + 1, dtype=probs.dtype)
    return ((1 - probs) ** gamma - 1).unsqueeze(-1) / m


def smoothing_eps(teacher: torch.Tensor, delta: float, order: int) -> torch.Tensor:
    """Eq. 4.16 for C classes: eps_{c,m} = Delta_c / (m p^t_c) with Delta_c = delta / C - delta p^t_c
    (the thesis's binary case has delta / 2), shape (B, C, M)."""
    m = torch.arange(1, order + 1, dtype=teacher.dtype)
    c = teacher.shape[-1]
    return (delta * (1.0 / (c * teacher) - 1.0)).unsqueeze(-1) / m


# -- the baselines of section 4.6.2 ---------------------------------------------------------------


def smooth(teacher: torch.Tensor, delta: float) -> torch.Tensor:
    """Eq. 4.14 for C classes: (1 - delta) p^t + delta / C."""
    return (1 - delta) * teacher + delta / teacher.shape[-1]


def label_smoothing_loss(teacher: torch.Tensor, logits: torch.Tensor, delta: float) -> torch.Tensor:
    """Eq. 4.15: KL from the smoothed teacher of eq. 4.14."""
    return kl_loss(smooth(teacher, delta), logits)


def focal_loss(teacher: torch.Tensor, logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. 4.8: -H(p^t) + sum_c p^t_c (1 - p^s_c)^gamma (-log p^s_c), mean over the batch."""
    logp = torch.log_softmax(logits.float(), -1)
    weight = (1 - logp.exp()) ** gamma
    return (_xlogx(teacher) - teacher * weight * logp).sum(-1).mean()


def temperature_loss(teacher: torch.Tensor, logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Hinton et al.'s temperature scaling (eq. 4.11-4.12): tau^2 KL(softmax(log p^t / tau) || softmax(z / tau))."""
    scaled = torch.softmax(torch.log(teacher.float().clamp_min(TINY)) / tau, -1)
    return tau**2 * kl_loss(scaled, logits.float() / tau)


def flooding(loss: torch.Tensor, level: float) -> torch.Tensor:
    """Ishida et al.'s flooding: |L - b| + b, so the loss is pushed back up once it falls below b."""
    return (loss - level).abs() + level


def annealing_loss(teacher: torch.Tensor, logits: torch.Tensor, progress: float, max_tau: float) -> torch.Tensor:
    """Annealing KD (Jafari et al. 2021, phase 1): MSE between the student's logits and the teacher's
    logits scaled by Phi = 1 - (T - 1) / max_tau, the temperature T falling from max_tau to 1 as
    ``progress`` goes from 0 to 1. The teacher's logits are its centred log-probabilities (the student
    logits are centred too: softmax ignores a shift)."""
    t_logits = torch.log(teacher.float().clamp_min(TINY))
    t_logits = t_logits - t_logits.mean(-1, keepdim=True)
    s_logits = logits.float() - logits.float().mean(-1, keepdim=True)
    temperature = max_tau - (max_tau - 1) * min(max(progress, 0.0), 1.0)
    phi = 1 - (temperature - 1) / max_tau
    return ((s_logits - phi * t_logits) ** 2).sum(-1).mean()
