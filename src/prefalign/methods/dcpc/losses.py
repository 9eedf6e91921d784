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


def pairwise_disagreement(probs: torch.Tensor, kind: str = "kl") -> torch.Tensor:
    """How much A's and B's predicted distributions disagree, ``(B, C) -> (B, B)``; zero when they agree.

    ``kl``: KL(L_A || L_B), eq. 4's cross-entropy minus L_A's entropy (same unit as eq. 4, so tau_ambiguity
    keeps its scale); ``js``: the Jensen-Shannon divergence (symmetric, at most log 2);
    ``cross_entropy``: eq. 4 itself, which is not zero for agreeing but uncertain pairs (the old gate).
    """
    p = probs.detach().float()
    if kind in ("kl", "cross_entropy"):
        return pairwise_label_divergence(p, kind).clamp(min=0)
    if kind == "js":
        mix = 0.5 * (p.unsqueeze(1) + p.unsqueeze(0))  # (B, B, C)
        log_mix = torch.log(mix.clamp(min=1e-12))
        log_p = torch.log(p.clamp(min=1e-12))
        kl_a = (p.unsqueeze(1) * (log_p.unsqueeze(1) - log_mix)).sum(-1)
        kl_b = (p.unsqueeze(0) * (log_p.unsqueeze(0) - log_mix)).sum(-1)
        return (0.5 * (kl_a + kl_b)).clamp(min=0)
    raise ValueError(f"unknown disagreement {kind!r}")


def rms_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each row (last axis) divided by its root mean square: every layer's state on one scale (mean square 1)."""
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


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
    layer l+1), RMS-normalised per layer when ``normalize`` (raw residual streams grow with depth);
    ``prefix_delta`` is (B, L, F) or None: the input-dependent part of each example's layer-l prefix
    (the shared part cancels in P_A - P_B). Whether the token half carries gradient is the caller's
    choice: DCPC detaches ``pooled_layers`` (eq. 27 updates P_A, P_B only).
    """
    states = rms_normalize(pooled_layers) if normalize else pooled_layers.float()
    token_term = pairwise_sq_distance(states, reduction)
    if prefix_delta is None:
        return token_term
    return token_term + pairwise_sq_distance(prefix_delta.float(), reduction)


def _fp32(fn):
    """Run a pair term in float32 even inside a bf16/fp16 autocast region (its inputs are cast by the term)."""

    def wrapped(*args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


@_fp32
def pairwise_sq_distance(x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """(B, L, F) -> (B, B): squared Euclidean distance per layer, averaged over the L layers.

    From the differences a - b (``torch.cdist`` without its matmul shortcut), in float32: the expanded
    |a|^2 + |b|^2 - 2 a.b loses every digit of a small distance between two long vectors. ``mean`` also
    divides by F. The gradient of the squared distance is 2 (a - b), zero for equal rows.
    """
    per_layer = x.float().transpose(0, 1).contiguous()  # (L, B, F)
    dist = torch.cdist(per_layer, per_layer, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    if reduction == "mean":
        dist = dist / x.shape[-1]
    return dist.mean(0)


@_fp32
def pairwise_lowrank_sq_distance(codes: torch.Tensor, weight: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """pairwise_sq_distance of x_A^l = codes_A W_l^T (row by row), from the codes: (B, m, r), (L, k, r) -> (B, B).

    |x_A^l - x_B^l|^2 = sum_j (c_Aj - c_Bj)^T G_l (c_Aj - c_Bj) with G_l = W_l^T W_l (r x r), from the
    code differences (B, B, m, r), so no (B, L, m k) tensor is built; a bias shared by all rows cancels.
    """
    c, w = codes.float(), weight.float()
    m = c.shape[1]
    gram = w.transpose(1, 2) @ w  # (L, r, r)
    diff = c.unsqueeze(1) - c.unsqueeze(0)  # (B, B, m, r)
    dist = torch.einsum("abmr,lrs,abms->ab", diff, gram, diff) / len(w)  # mean over layers
    if reduction == "mean":
        dist = dist / (m * w.shape[1])
    return dist


@_fp32
def pairwise_row_scale_sq_distance(scales: torch.Tensor, row_sq_norms: torch.Tensor, reduction: str, width: int):
    """|P_A^l - P_B^l|^2 averaged over layers when P^l = P_static^l with row j scaled by (1 + s_j):
    sum_j (s_Aj - s_Bj)^2 |P_static^l_j|^2, from the scale differences; (B, m), (L, m) -> (B, B).

    ``width`` is the number of features per layer (the divisor of ``mean``).
    """
    s = scales.float()
    diff_sq = (s.unsqueeze(1) - s.unsqueeze(0)).pow(2)  # (B, B, m)
    dist = diff_sq @ row_sq_norms.float().mean(0)  # mean over layers of sum_j
    if reduction == "mean":
        dist = dist / width
    return dist


@_fp32
def pairwise_gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Eq. 12 (Gaussian reading): KL(N(mu_A, sigma_A^2) || N(mu_B, sigma_B^2)), mean over d.

    ``mu``, ``sigma``: (B, d) -> (B, B), in float32 from differences, per dimension:
    (mu_A - mu_B)^2 / (2 s_B^2) + (expm1(2t) - 2t) / 2 with t = log s_A - log s_B, which is the closed
    form log(s_B/s_A) + (s_A^2 + (mu_A - mu_B)^2) / (2 s_B^2) - 1/2 without its cancellations
    (non-negative term by term, so no clamp cuts the gradient).
    """
    mu, sigma = mu.float(), sigma.float()
    log_s = torch.log(sigma)
    return _gaussian_kl(mu.unsqueeze(1), mu.unsqueeze(0), log_s.unsqueeze(1), log_s.unsqueeze(0), sigma.unsqueeze(0))


def _gaussian_kl(mu_a, mu_b, log_s_a, log_s_b, sigma_b) -> torch.Tensor:
    """Eq. 12 per pair from differences, mean over the last (d) axis: the A and B sides broadcast to (B, B, d)
    in pairwise_gaussian_kl and are the gated pairs' (P, d) rows in gated_gaussian_kl."""
    t = log_s_a - log_s_b  # log s_A - log s_B
    mean_term = (mu_a - mu_b).pow(2) / (2 * sigma_b.pow(2))
    var_term = 0.5 * (torch.expm1(2 * t) - 2 * t)
    return (mean_term + var_term).mean(-1)


# Share of gated pairs above which the (B, B, d) computation is cheaper than gathering the pairs' rows
# (dcpc_terms_profile.py at MiniLM batch 64: half the pairs gathered cost about 0.6x the full matrix; all
# of them, gathered, cost more than it).
GATED_KL_MAX_SHARE = 0.5


@_fp32
def gated_gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``reduce_pairs(pairwise_gaussian_kl(mu, sigma), gate, "gated_pairs")`` from the gated pairs alone.

    Eq. 12's per-pair KL by the same difference formula, on the (P, d) rows of the P ordered pairs
    (A, B), A != B, where ``gate`` is true, instead of on (B, B, d): O(P d), not O(B^2 d). The
    ungated pairs carry no gradient in ``reduce_pairs`` either; values agree to float rounding. Above
    ``GATED_KL_MAX_SHARE`` of the pairs, indexing costs more than it saves: the full matrix is used.
    """
    mu, sigma = mu.float(), sigma.float()
    gate = gate & off_diagonal(len(gate), gate.device)
    if gate.sum() > GATED_KL_MAX_SHARE * len(gate) * (len(gate) - 1):
        return reduce_pairs(pairwise_gaussian_kl(mu, sigma), gate, "gated_pairs")
    a, b = gate.nonzero(as_tuple=True)
    log_s = torch.log(sigma)
    return _gaussian_kl(mu[a], mu[b], log_s[a], log_s[b], sigma[b]).sum() / max(len(a), 1)


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
