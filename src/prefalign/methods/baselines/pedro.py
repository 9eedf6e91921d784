"""PEDRO (Xie et al., 2024, "PEDRO: Parameter-Efficient fine-tuning with prompt DEpenDent
Representation MOdification"). PEFT has no PEDRO, so it is written here.

Every Transformer block gets a lightweight vector generator. It mean-pools the hidden states
entering the block over the input's real tokens (the prompt), normalises the mean (layer norm
without parameters, so the generator sees unit-scale input in pre-norm decoders too) and maps
it d -> r -> (k + v + f) (GELU between, r = 16 by default). The three outputs, plus one, scale
the keys, the values and the FFN's intermediate activations of that block, (IA)^3-style but
per input: ``k * l_k``, ``v * l_v`` and ``down(h * l_ff)``. The up-projection starts at zero, so
every scale starts at exactly 1 and the model starts unchanged.

Hooks: a pre-hook on the block computes the vectors; forward hooks on the key and value
projections (or on the fused qkv projection of GPT-2, scaling only its key and value slices)
and a pre-hook on the FFN down-projection apply them. Decoders pool every real token of the
scored sequence (classification reads one forward pass over the whole input); on generation tasks
the prompt's tokens, in training and while generating, where the prompt's vectors serve every new
token.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from .config import PedroConfig
from .hooks import (
    FFN_OUTPUT,
    FUSED_QKV,
    KEY,
    PREFIX,
    VALUE,
    HookedBaseline,
    MaskReader,
    OwnedHook,
    find_in_layer,
    find_layers,
    in_features,
    layer_hidden,
    out_features,
    require_in_layer,
)


class VectorGenerator(MaskReader):
    """Pooled block input -> per-example scales for keys, values and the FFN intermediate."""

    def __init__(self, d: int, r: int, k_dim: int, v_dim: int, ff_dim: int, q_dim: int = 0) -> None:
        super().__init__()
        self.sizes = (k_dim, v_dim, ff_dim)
        self.q_dim = q_dim  # > 0: keys and values come out of a fused q|k|v projection after q_dim queries
        self.down, self.act, self.up = nn.Linear(d, r), nn.GELU(), nn.Linear(r, k_dim + v_dim + ff_dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.current: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def clear(self) -> None:
        self.current = None

    def vectors(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pooled = self.pool(hidden.to(self.down.weight.dtype))
        pooled = nn.functional.layer_norm(pooled, pooled.shape[-1:])
        scales = 1 + self.up(self.act(self.down(pooled)))
        return tuple(s.unsqueeze(1) for s in scales.split(self.sizes, dim=-1))  # each (B, 1, dim)

    # -- hooks ----------------------------------------------------------------------------------------------
    def on_block(self, module, args, kwargs):
        if not (self.hold and self.current is not None):  # generating: the prompt's vectors serve every new token
            self.current = self.vectors(layer_hidden(args, kwargs))
        return None

    def on_key(self, module, args, output):
        return None if self.current is None else output * self.current[0].to(output.dtype)

    def on_value(self, module, args, output):
        return None if self.current is None else output * self.current[1].to(output.dtype)

    def on_qkv(self, module, args, output):
        if self.current is None:
            return None
        lk, lv, _ = self.current
        ones = lk.new_ones(lk.shape[0], 1, self.q_dim)
        return output * torch.cat([ones, lk, lv], dim=-1).to(output.dtype)

    def on_ffn(self, module, args):
        if self.current is None:
            return None
        return (args[0] * self.current[2].to(args[0].dtype), *args[1:])


class Pedro(HookedBaseline):
    """PEDRO: per-block, per-input scaling vectors for keys, values and FFN activations."""

    name = "pedro"
    config_class = PedroConfig

    def install(self, model, initialise):
        geo = self.geo
        for layer in find_layers(model, geo):
            ffn = require_in_layer(layer, FFN_OUTPUT, None, "feed-forward output projection", None, geo)
            key, value = find_in_layer(layer, KEY), find_in_layer(layer, VALUE)
            fused = find_in_layer(layer, FUSED_QKV) if key is None or value is None else None
            if fused is not None:
                q_dim = out_features(fused[1]) - 2 * geo.kv_dim
                gen = VectorGenerator(geo.hidden_size, self.config.r, geo.kv_dim, geo.kv_dim, in_features(ffn), q_dim)
            elif key is not None and value is not None:
                gen = VectorGenerator(
                    geo.hidden_size, self.config.r, out_features(key[1]), out_features(value[1]), in_features(ffn)
                )
            else:
                raise ConfigError(
                    f"PEDRO found no key/value projections in the layers of this '{geo.model_type}' "
                    f"model (looked for {', '.join(KEY + VALUE + FUSED_QKV)})"
                )
            layer.add_module(PREFIX + "vector_generator", gen.to(ffn.weight.device))
            layer.register_forward_pre_hook(OwnedHook(gen, "on_block"), with_kwargs=True)
            if fused is not None:
                fused[1].register_forward_hook(OwnedHook(gen, "on_qkv"))
            else:
                key[1].register_forward_hook(OwnedHook(gen, "on_key"))
                value[1].register_forward_hook(OwnedHook(gen, "on_value"))
            ffn.register_forward_pre_hook(OwnedHook(gen, "on_ffn"))
