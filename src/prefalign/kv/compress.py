"""Apply a rank schedule to a model: swap compressed attention modules in, or truncate weights in place."""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..models.introspect import geometry
from .attention import LoRCAttention
from .factorize import (
    Factor,
    attention_modules,
    factorize,
    family,
    max_rank,
    num_groups,
    projections,
    truncated_weight,
)


def layer_factors(model, layer: int, rank: int, granularity: str) -> tuple[Factor, Factor]:
    """Key and value factors of ``layer`` at ``rank`` (truncated SVD per block)."""
    proj = projections(model, layer)
    check_rank(model, rank, granularity)
    groups = num_groups(granularity, proj.num_kv_heads)
    return factorize(proj.k, groups, rank), factorize(proj.v, groups, rank)


def check_rank(model, rank: int, granularity: str) -> None:
    """One line if ``rank`` cannot be a block's rank for this model and granularity."""
    geo = geometry(model.config)
    limit = max_rank(granularity, geo.num_key_value_heads, geo.head_dim, geo.hidden_size)
    if not isinstance(rank, int) or not 1 <= rank <= limit:
        what = "the head dimension" if granularity == "head" else "kv_heads x head_dim"
        raise ConfigError(f"rank {rank} is larger than {what} ({limit}) or below 1; choose a rank in 1..{limit}")


def install(model, layer: int, key: Factor, value: Factor) -> LoRCAttention:
    """Replace layer ``layer``'s self-attention with a LoRCAttention built from the given factors."""
    proj = projections(model, layer)
    fam = family(model)
    old = attention_modules(model)[layer]
    rotary = model.model.rotary_emb if fam == "llama" else None
    with torch.no_grad():
        new = LoRCAttention(proj, key, value, layer_idx=layer, scaling=float(old.scaling), rotary=rotary)
    new.to(proj.q.device)
    _carry_hooks(old, new, layer, fam)
    if fam == "llama":
        model.model.layers[layer].self_attn = new
    else:
        model.transformer.h[layer].attn = new
    return new


def _hooks(module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _carry_hooks(old, new: LoRCAttention, layer: int, fam: str) -> None:
    """Move output hooks (and the modules they own, e.g. a Houlsby adapter) from the old query/output
    projections to the new ones, whose outputs are the same; refuse hooks that cannot follow."""
    same_output = {"q_proj": new.q_proj, "o_proj": new.o_proj} if fam == "llama" else {"c_proj": new.o_proj}
    lost = [name for name in ("k_proj", "v_proj", "c_attn") if hasattr(old, name) and _hooks(getattr(old, name))]
    lost += [name for name in same_output if getattr(old, name)._forward_pre_hooks]
    if _hooks(old) or lost:
        raise ConfigError(
            f"layer {layer}'s attention carries hooks on {', '.join(lost) or 'the attention module'} (an adapter such "
            "as BitFit or PEDRO) that a compressed layer cannot keep; use the plain base model or another method"
        )
    for name, target in same_output.items():
        source = getattr(old, name)
        if not source._forward_hooks:
            continue
        for child_name, child in source.named_children():
            target.add_module(child_name, child)
        target._forward_hooks.update(source._forward_hooks)
        target._forward_hooks_with_kwargs.update(source._forward_hooks_with_kwargs)
        target._forward_hooks_always_called.update(source._forward_hooks_always_called)


def compress_model(model, ranks: list[int | None], granularity: str = "head") -> dict[int, tuple[Factor, Factor]]:
    """Compress ``model`` in place: layer l gets rank ``ranks[l]`` (None: left as it is). Returns the factors."""
    layers = attention_modules(model)
    if len(ranks) != len(layers):
        raise ConfigError(f"the schedule has {len(ranks)} ranks but the model has {len(layers)} layers")
    factors = {}
    for layer, rank in enumerate(ranks):
        if rank is None:
            continue
        if isinstance(layers[layer], LoRCAttention):
            raise ConfigError(f"layer {layer} is already compressed; start from the original model")
        factors[layer] = layer_factors(model, layer, rank, granularity)
    for layer, (key, value) in factors.items():
        install(model, layer, key, value)
    model.config.use_cache = True
    return factors


def compressed_layers(model) -> list[bool]:
    """Which layers hold a LoRCAttention (the layout a LoRCCache needs)."""
    return [isinstance(m, LoRCAttention) for m in attention_modules(model)]


def truncate_model(model, ranks: list[int | None], granularity: str = "head") -> None:
    """Replace each listed layer's key/value weights with their truncated-SVD versions, in place.

    The reference the compressed path must equal: same ranks, same blocks, nothing else changed.
    """
    for layer, rank in enumerate(ranks):
        if rank is None:
            continue
        check_rank(model, rank, granularity)
        proj = projections(model, layer)
        groups = num_groups(granularity, proj.num_kv_heads)
        with torch.no_grad():
            proj.k.copy_(truncated_weight(proj.k, groups, rank))
            proj.v.copy_(truncated_weight(proj.v, groups, rank))
