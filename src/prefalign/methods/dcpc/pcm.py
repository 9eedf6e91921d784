"""The Preference Correction Module (DCPC section 3.5, eq. 9-12)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...models.introspect import ModelGeometry
from . import losses
from .config import DCPCConfig


@dataclass
class PCMOutput:
    mu: torch.Tensor  # (B, d)
    sigma: torch.Tensor  # (B, d)
    p_pref: torch.Tensor  # (B, d), eq. 10
    delta: torch.Tensor | None  # (B, L, 2, m, kv_dim): input-dependent change of each example's prefix
    codes: torch.Tensor | None = None  # (B, m, r): 'elementwise' only, delta = codes -> proj[1] per layer
    scales: torch.Tensor | None = None  # (B, m): 'gate' only, s = M p_pref, row j of every layer times (1 + s_j)


class PreferenceCorrection(nn.Module):
    """Aux classifier (eq. 9) -> p_pref (eq. 10) -> meta-matrix M (eq. 11) -> per-example prefix change.

    ``gate`` (default): eq. 11 literally, s = M p_pref in R^m, scaling prefix row j of every layer by
    (1 + s_j); m x d + the aux classifier, 0.17M at LLaMA-2 7B (the paper's +0.2M).
    ``elementwise``: P_new = M * (d * p_pref) row-wise, an m x d prefix embedding (uniform p_pref
    gives M itself), projected by a rank-r map to every layer's keys/values (4.8M at 7B).
    Both start as the identity (zero projection / zero M), so DCPC starts as P-Tuning v2.
    ``pcm_gate_input: centred`` reads 'gate' as s = M (d p_pref - 1) and ``pcm_input_norm`` standardises eq. 9's
    input: together they make s differ per input (docs/methods/dcpc.md item 10).
    """

    def __init__(self, geo: ModelGeometry, cfg: DCPCConfig) -> None:
        super().__init__()
        d, m = geo.hidden_size, cfg.prefix_length
        self.geo, self.mode, self.m, self.mu_scale = geo, cfg.pcm_mode, m, cfg.pcm_mu_scale
        self.input_norm, self.centred = cfg.pcm_input_norm, cfg.pcm_gate_input == "centred"
        # Eq. 9: a shared low-rank auxiliary classifier d -> r -> (mu, sigma).
        self.aux = nn.Sequential(nn.Linear(d, cfg.pcm_aux_rank), nn.GELU(), nn.Linear(cfg.pcm_aux_rank, 2 * d))
        nn.init.normal_(self.aux[2].weight, std=0.02)
        nn.init.zeros_(self.aux[2].bias)
        with torch.no_grad():
            self.aux[2].bias[d:] = cfg.pcm_sigma_bias  # default -2: softplus ~ 0.13, little sampling noise
        if self.mode == "elementwise":
            self.meta = nn.Parameter(torch.randn(m, d))
            out = geo.num_layers * 2 * geo.kv_dim
            self.proj = nn.Sequential(nn.Linear(d, cfg.pcm_proj_rank, bias=False), nn.Linear(cfg.pcm_proj_rank, out))
            nn.init.zeros_(self.proj[1].weight)
            nn.init.zeros_(self.proj[1].bias)
        else:
            self.meta = nn.Parameter(torch.zeros(m, d))

    def forward(
        self,
        embedding: torch.Tensor,
        static_prefix: torch.Tensor,
        *,
        sample: bool,
        add_static: bool = False,
        write_prefix: bool = True,
    ) -> PCMOutput:
        """``embedding`` (B, d) from the input; ``static_prefix`` (L, 2, m, kv_dim).

        With ``add_static``, ``delta`` holds each example's whole prefix, ``static_prefix + delta``, made in one
        tensor (the sum is added into the delta's own memory instead of a second per-example tensor), with
        the same values bit for bit: the same product, then the same sum. (Not ``addcmul``: it fuses the two
        roundings into one and differs in the last bit.)
        In 'gate' mode ``write_prefix=False`` leaves ``delta`` None: the caller writes the scaled rows itself
        from ``scales`` (inference writes them straight into the attention cache).
        """
        d = embedding.shape[-1]
        if self.input_norm:  # eq. 9's input on one scale: zero mean, unit variance over its d features
            embedding = F.layer_norm(embedding, (d,))
        mu, raw_sigma = self.aux(embedding).chunk(2, dim=-1)
        if self.mu_scale != 1.0:  # eq. 10's mean on the softmax's scale (a temperature 1/alpha on mu alone)
            mu = mu * self.mu_scale
        sigma = F.softplus(raw_sigma) + 1e-4
        p_pref = torch.softmax(mu + sigma * torch.randn_like(mu) if sample else mu, dim=-1)  # eq. 10
        b = embedding.shape[0]
        if self.mode == "elementwise":
            p_new = self.meta.unsqueeze(0) * (d * p_pref).unsqueeze(1)  # (B, m, d)
            codes = self.proj[0](p_new)  # (B, m, r)
            delta = self.proj[1](codes)  # (B, m, L*2*kv)
            delta = delta.view(b, self.m, self.geo.num_layers, 2, self.geo.kv_dim).permute(0, 2, 3, 1, 4)
            if add_static:  # delta is this call's own tensor: without autograd, add into it
                delta = static_prefix.unsqueeze(0) + delta if torch.is_grad_enabled() else delta.add_(static_prefix)
            return PCMOutput(mu=mu, sigma=sigma, p_pref=p_pref, delta=delta, codes=codes)
        # Eq. 11: s = M p_pref as written, or M (d p_pref - 1), which is zero at uniform p_pref: (B, m)
        s = (d * p_pref - 1.0) @ self.meta.T if self.centred else p_pref @ self.meta.T
        if not write_prefix:
            return PCMOutput(mu=mu, sigma=sigma, p_pref=p_pref, delta=None, scales=s)
        static, scale = static_prefix.unsqueeze(0), s.view(b, 1, 1, self.m, 1)
        delta = static * scale
        if add_static:  # the product is this call's own tensor, and autograd needs only its inputs
            delta = delta.add_(static)
        return PCMOutput(mu=mu, sigma=sigma, p_pref=p_pref, delta=delta, scales=s)

    def pairwise_delta_distance(self, out: PCMOutput, static_prefix: torch.Tensor, reduction: str = "mean"):
        """Eq. 7's prefix half, |P_A^l - P_B^l|^2 = |delta_A^l - delta_B^l|^2 averaged over layers, (B, B).

        The static prefix every input shares cancels; the distance comes from the PCM's per-example
        outputs (rank-r codes in 'elementwise' mode, row scales in 'gate' mode) by differences, so the
        gradient reaches the PCM and nothing else: in 'gate' mode the row norms of the static prefix are
        constants here (a shared prefix could only shrink the difference by shrinking itself).
        """
        layers, width = self.geo.num_layers, 2 * self.m * self.geo.kv_dim
        if out.codes is not None:
            weight = self.proj[1].weight.view(layers, 2 * self.geo.kv_dim, -1)  # rows ordered as delta's (L, 2, kv)
            return losses.pairwise_lowrank_sq_distance(out.codes, weight, reduction)
        row_sq = static_prefix.detach().float().pow(2).sum((1, 3))  # (L, m): |P_static^l_j|^2 over keys+values
        return losses.pairwise_row_scale_sq_distance(out.scales, row_sq, reduction, width)


def pcm_parameter_count(geo: ModelGeometry, cfg: DCPCConfig) -> int:
    """The PCM's parameters for a geometry, from the config alone (no weights built)."""
    d, m, r = geo.hidden_size, cfg.prefix_length, cfg.pcm_aux_rank
    aux = d * r + r + r * 2 * d + 2 * d
    if cfg.pcm_mode == "gate":
        return m * d + aux
    rank = cfg.pcm_proj_rank
    return m * d + aux + d * rank + rank * geo.num_layers * 2 * geo.kv_dim + geo.num_layers * 2 * geo.kv_dim


def prefix_parameter_count(geo: ModelGeometry, prefix_length: int) -> int:
    """A P-Tuning v2 prefix's parameters (no reparameterisation): m key and m value rows per layer."""
    return geo.num_layers * 2 * prefix_length * geo.kv_dim


def matching_prefix_length(geo: ModelGeometry, cfg: DCPCConfig) -> int:
    """The P-Tuning v2 prefix length whose size is closest to DCPC's (static prefix + PCM) on ``geo``."""
    target = prefix_parameter_count(geo, cfg.prefix_length) + (pcm_parameter_count(geo, cfg) if cfg.use_pcm else 0)
    per_token = prefix_parameter_count(geo, 1)
    return max(1, round(target / per_token))
