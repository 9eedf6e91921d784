"""LoRC's factorisation (thesis section 5.4.1): truncated SVD of a layer's key and value projections.

Weights are read in ``torch.nn.Linear`` layout, ``W`` of shape (out, in) with ``y = x W^T + b``.
The ``kv_heads * head_dim`` output rows are split into ``groups`` blocks (one per key/value head
with ``granularity="head"``, one for the whole projection with ``granularity="layer"``), and each
block ``W_g = U S V^T`` is cut to rank ``r``:

    latent_g = x (S_r V_r^T)^T            # (..., r): what the cache stores
    W_g x ~= U_r latent_g                 # the up-projection, (out_g, r)

so the singular values sit on the cached side and the up-projection is orthonormal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..errors import ConfigError, ModelLoadError

GRANULARITIES = ("head", "layer")


@dataclass
class Projections:
    """One attention layer's q/k/v/o weights in Linear layout (out, in), their biases, and its shape."""

    q: torch.Tensor
    q_bias: torch.Tensor | None
    k: torch.Tensor
    k_bias: torch.Tensor | None
    v: torch.Tensor
    v_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    num_heads: int
    num_kv_heads: int
    head_dim: int


def family(model) -> str:
    """'llama' (LLaMA-family: separate q/k/v/o projections, RoPE, GQA) or 'gpt2' (fused c_attn, no RoPE)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    attn = getattr(layers[0], "self_attn", None) if layers is not None and len(layers) else None
    if attn is not None and hasattr(attn, "q_proj") and (hasattr(attn, "k_proj") or hasattr(attn, "k_down")):
        if getattr(inner, "rotary_emb", None) is None:
            raise ModelLoadError(
                f"compress-kv supports LLaMA-family decoders with rotary embeddings and GPT-2; "
                f"'{model.config.model_type}' has no model.rotary_emb"
            )
        return "llama"
    transformer = getattr(model, "transformer", None)
    blocks = getattr(transformer, "h", None)
    attn = getattr(blocks[0], "attn", None) if blocks is not None and len(blocks) else None
    if attn is not None and (hasattr(attn, "c_attn") or hasattr(attn, "k_down")):
        if not getattr(attn, "is_cross_attention", False):
            return "gpt2"
    kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise ModelLoadError(
        f"compress-kv supports LLaMA-family decoders (llama, mistral, qwen2, SmolLM2) and GPT-2; "
        f"'{kind}' is neither: pass a model of one of those families"
    )


def attention_modules(model) -> list:
    """The self-attention module of every decoder layer, in order."""
    if family(model) == "llama":
        return [layer.self_attn for layer in model.model.layers]
    return [block.attn for block in model.transformer.h]


def projections(model, layer: int) -> Projections:
    """Layer ``layer``'s attention weights, read without copying from either family."""
    cfg = model.config
    attn = attention_modules(model)[layer]
    fam = family(model)
    plain = (nn.Linear,) if fam == "llama" else (Conv1D,)
    names = ("q_proj", "k_proj", "v_proj", "o_proj") if fam == "llama" else ("c_attn", "c_proj")
    wrapped = [n for n in names if hasattr(attn, n) and type(getattr(attn, n)) not in plain]
    if wrapped:
        raise ConfigError(
            f"layer {layer}'s {', '.join(wrapped)} is wrapped ({type(getattr(attn, wrapped[0])).__name__}, e.g. "
            "LoRA): LoRC needs the plain projections; merge the adapter or use a method that leaves them alone"
        )
    if fam == "llama":
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = attn.head_dim
        return Projections(
            attn.q_proj.weight,
            attn.q_proj.bias,
            attn.k_proj.weight,
            attn.k_proj.bias,
            attn.v_proj.weight,
            attn.v_proj.bias,
            attn.o_proj.weight,
            attn.o_proj.bias,
            heads,
            kv_heads,
            head_dim,
        )
    d = cfg.n_embd
    heads = cfg.n_head
    w = attn.c_attn.weight.t()  # Conv1D stores (in, out); Linear layout is (out, in)
    b = attn.c_attn.bias
    return Projections(
        w[:d],
        b[:d],
        w[d : 2 * d],
        b[d : 2 * d],
        w[2 * d :],
        b[2 * d :],
        attn.c_proj.weight.t(),
        attn.c_proj.bias,
        heads,
        heads,
        d // heads,
    )


def num_groups(granularity: str, kv_heads: int) -> int:
    """How many SVDs a projection gets: one per key/value head, or one for the whole projection."""
    if granularity not in GRANULARITIES:
        raise ConfigError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {granularity!r}")
    return kv_heads if granularity == "head" else 1


def max_rank(granularity: str, kv_heads: int, head_dim: int, hidden: int) -> int:
    """The largest rank a block can have: head_dim per head, or min(kv_heads*head_dim, hidden) per layer."""
    return head_dim if granularity == "head" else min(kv_heads * head_dim, hidden)


@dataclass
class Factor:
    """A projection cut to rank ``rank`` in ``groups`` blocks: ``down`` (G, r, in), ``up`` (G, out_g, r)."""

    down: torch.Tensor
    up: torch.Tensor
    singular_values: torch.Tensor  # (G, min(out_g, in)): all of them, for the error bound and the schedule

    @property
    def rank(self) -> int:
        return int(self.down.shape[1])

    def weight(self) -> torch.Tensor:
        """The rank-r weight U_r S_r V_r^T, blocks stacked back to (out, in)."""
        return torch.cat([self.up[g] @ self.down[g] for g in range(self.up.shape[0])], dim=0)


def svd_blocks(weight: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full thin SVD of each of ``groups`` row blocks of ``weight``, in float64: U (G,o,k), S (G,k), Vh (G,k,in)."""
    out, _ = weight.shape
    if out % groups:
        raise ConfigError(f"a projection with {out} outputs cannot be split into {groups} blocks")
    blocks = weight.detach().to(torch.float64).reshape(groups, out // groups, -1)
    return torch.linalg.svd(blocks, full_matrices=False)


def factorize(weight: torch.Tensor, groups: int, rank: int) -> Factor:
    """Truncated SVD of ``weight`` (out, in) per row block, singular values folded into the down side."""
    u, s, vh = svd_blocks(weight, groups)
    limit = s.shape[-1]
    if not 1 <= rank <= limit:
        raise ConfigError(f"rank {rank} is outside 1..{limit} (the block's head dimension); choose a smaller rank")
    down = s[:, :rank, None] * vh[:, :rank, :]
    up = u[:, :, :rank]
    dtype = weight.dtype
    return Factor(down=down.to(dtype).contiguous(), up=up.to(dtype).contiguous(), singular_values=s.to(torch.float32))


def truncated_weight(weight: torch.Tensor, groups: int, rank: int) -> torch.Tensor:
    """The rank-``rank`` truncated-SVD weight (per block), same shape and dtype as ``weight``."""
    u, s, vh = svd_blocks(weight, groups)
    if not 1 <= rank <= s.shape[-1]:
        raise ConfigError(f"rank {rank} is outside 1..{s.shape[-1]}; choose a smaller rank")
    blocks = u[:, :, :rank] @ (s[:, :rank, None] * vh[:, :rank, :])
    return blocks.reshape(weight.shape).to(weight.dtype)


def condition_number_log(weight: torch.Tensor) -> float:
    """ln kappa(W) = ln sigma_max - ln sigma_min of the whole projection (eq. 5.10), in log space.

    A singular value below float64 resolution (sigma_max * 1e-15) is floored there, so an exactly
    rank-deficient matrix gives a large finite value instead of infinity.
    """
    s = torch.linalg.svdvals(weight.detach().to(torch.float64))
    smax = s.max()
    smin = torch.clamp(s.min(), min=float(smax) * 1e-15)
    return float(torch.log(smax) - torch.log(smin))
