"""DCPC's loss terms over all ordered pairs (A, B), A != B, of a batch, as batched tensor ops.

Each function takes per-example tensors and returns a ``(B, B)`` matrix of per-pair values plus
whatever gate it applies; ``reduce_pairs`` turns a matrix and a gate into the batch loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def off_diagonal(n: int, device=None) -> torch.Tensor:
    """Boolean ``(n, n)`` mask of the ordered pairs A != B."""
    return ~torch.eye(n, dtype=torch.bool, device=device)


def pairwise_cosine(embeddings: torch.Tensor, center: bool = False) -> torch.Tensor:
    """Eq. 3: cos(theta) between every two pooled embeddings, ``(B, d) -> (B, B)``.

    ``center`` subtracts the batch mean first, so a direction every input shares (anisotropy, or a
    prefix that dominates attention) does not make unrelated inputs look alike.
    """
    x = embeddings.float()
    if center:
        x = x - x.mean(0, keepdim=True)
    unit = F.normalize(x, dim=-1, eps=1e-8)
    return unit @ unit.T


def pairwise_label_divergence(probs: torch.Tensor, kind: str = "cross_entropy") -> torch.Tensor:
    """Eq. 4: D_label(L_A, L_B) = -sum_i L_A(i) log L_B(i) for every pair, ``(B, C) -> (B, B)``.

    ``kind="kl"`` subtracts L_A's entropy (KL(L_A || L_B)), so pairs that agree score zero.
    """
    log_p = torch.log(probs.float().clamp(min=1e-12))
    ce = -(probs.float() @ log_p.T)  # [a, b] = -sum_i p_a(i) log p_b(i)
    if kind == "cross_entropy":
        return ce
    if kind == "kl":
        neg_entropy = (probs.float() * log_p).sum(-1, keepdim=True)
        return ce + neg_entropy
    raise ValueError(f"unknown label divergence {kind!r}")


def pairwise_ambiguity(
    embeddings: torch.Tensor,
    probs: torch.Tensor,
    tau_cos: float,
    *,
    divergence: str = "cross_entropy",
    detach_similarity: bool = True,
    center: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 5 per pair: I[cos >= tau_cos] * cos * D_label; returns (values, cosine gate)."""
    cos = pairwise_cosine(embeddings, center=center)
    if detach_similarity:
        cos = cos.detach()
    gate = (cos >= tau_cos) & off_diagonal(len(cos), cos.device)
    values = torch.where(gate, cos * pairwise_label_divergence(probs, divergence), torch.zeros_like(cos))
    return values, gate


def pairwise_alignment(
    pooled_layers: torch.Tensor,
    prefix_delta: torch.Tensor | None,
    *,
    reduction: str = "mean",
    normalize: bool = False,
) -> torch.Tensor:
    """Eq. 6-7 per pair: |C_A^l - C_B^l|^2 with C_A^l = P_A^l (+) T_B^{l+1}, averaged over layers.

    Concatenation splits the distance: |C_A - C_B|^2 = |P_A^l - P_B^l|^2 + |T_B^{l+1} - T_A^{l+1}|^2.
    ``pooled_layers`` is (B, L, d), the mean-pooled output of each layer l (= the token input of
    layer l+1); ``prefix_delta`` is (B, L, F) or None: the input-dependent part of each example's
    layer-l prefix (the shared part cancels in P_A - P_B; without the PCM the prefix term is 0).
    """
    states = F.normalize(pooled_layers.float(), dim=-1) if normalize else pooled_layers.float()
    token_term = pairwise_sq_distance(states, reduction)
    if prefix_delta is None:
        return token_term
    return token_term + pairwise_sq_distance(prefix_delta.float(), reduction)


def pairwise_sq_distance(x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """(B, L, F) -> (B, B): squared Euclidean distance per layer, averaged over the L layers.

    Computed as |a|^2 + |b|^2 - 2 a.b so no (B, B, F) tensor is built; ``mean`` also divides by F.
    """
    per_layer = x.transpose(0, 1)  # (L, B, F)
    sq = (per_layer * per_layer).sum(-1)  # (L, B)
    dist = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * per_layer @ per_layer.transpose(1, 2)).clamp(min=0)
    if reduction == "mean":
        dist = dist / x.shape[-1]
    return dist.mean(0)


def pairwise_lowrank_sq_distance(codes: torch.Tensor, weight: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """pairwise_sq_distance of x_A^l = codes_A W_l^T (row by row), from the codes: (B, m, r), (L, k, r) -> (B, B).

    |x_A^l - x_B^l|^2 = sum_j (c_Aj - c_Bj)^T G_l (c_Aj - c_Bj) with G_l = W_l^T W_l (r x r), so no
    (B, L, m k) tensor is built or kept for the backward pass; a bias shared by all rows cancels.
    """
    c, w = codes.float(), weight.float()
    b, m, r = c.shape
    gram = w.transpose(1, 2) @ w  # (L, r, r)
    flat = c.reshape(b, m * r)
    c_gram = torch.einsum("bmr,lrs->lbms", c, gram).reshape(len(w), b, m * r)  # c_Aj^T G_l, row by row
    cross = c_gram @ flat.T  # (L, B, B): sum_j c_Aj^T G_l c_Bj
    sq = (c_gram * flat).sum(-1)  # (L, B): |x_A^l|^2
    dist = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * cross).clamp(min=0)
    if reduction == "mean":
        dist = dist / (m * w.shape[1])
    return dist.mean(0)


def pairwise_gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Eq. 12 (Gaussian reading): KL(N(mu_A, sigma_A^2) || N(mu_B, sigma_B^2)), mean over d.

    ``mu``, ``sigma``: (B, d) -> (B, B). Closed form per dimension:
    log(s_B/s_A) + (s_A^2 + (mu_A - mu_B)^2) / (2 s_B^2) - 1/2.
    """
    mu, sigma = mu.float(), sigma.float()
    var = sigma**2
    log_s = torch.log(sigma)
    inv_var_b = 1.0 / var  # indexed by B
    d = mu.shape[-1]
    # Expand (mu_A - mu_B)^2 = mu_A^2 - 2 mu_A mu_B + mu_B^2 so every term is a (B, B) matmul.
    term_var = var @ inv_var_b.T  # sum_k s_A^2 / s_B^2
    term_mu = (mu**2) @ inv_var_b.T - 2 * mu @ (mu * inv_var_b).T + (mu**2 * inv_var_b).sum(-1).unsqueeze(0)
    log_ratio = log_s.sum(-1).unsqueeze(0) - log_s.sum(-1).unsqueeze(1)  # sum_k log s_B - log s_A
    kl = log_ratio + 0.5 * (term_var + term_mu) - 0.5 * d
    return (kl / d).clamp(min=0)


def pairwise_categorical_kl(probs: torch.Tensor) -> torch.Tensor:
    """Eq. 12 (softmax reading): KL(p_pref(A) || p_pref(B)) between preference distributions."""
    return pairwise_label_divergence(probs, "kl").clamp(min=0)


def reduce_pairs(values: torch.Tensor, gate: torch.Tensor, reduction: str = "gated_pairs") -> torch.Tensor:
    """Batch loss from per-pair values: mean over gated pairs, or over all ordered pairs."""
    gate = gate & off_diagonal(len(gate), gate.device)
    total = (values * gate).sum()
    if reduction == "gated_pairs":
        return total / gate.sum().clamp(min=1)
    if reduction == "all_pairs":
        n = len(gate)
        return total / max(n * (n - 1), 1)
    raise ValueError(f"unknown pair reduction {reduction!r}")
