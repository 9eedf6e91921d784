"""Learned-Adapter (Zhang, Wang, Tan and Zhu, 2023, "Learned adapters are better than manually designed
adapters"; DCPC appendix A.1.2: bottleneck 36): an adapter whose architecture is searched per layer.

Our reading (docs/methods/baselines.md, "Learned-Adapter"). Each Transformer block gets one bottleneck
adapter, d -> 36 -> d, the same parameter budget as the Houlsby adapter's two of 18 (Tables 1-2 give both
9.5M on LLaMA-2 7B; one adapter of 36 per block is 9.57M there). Its architecture is searched per block
by a continuous relaxation (DARTS-style, as Learned-Adapter's gradient-based search): softmax weights over
where the adapter acts (after the attention output projection, or after the FFN output projection, before
the residual add, as Houlsby's) and over its activation (ReLU, GELU, tanh, swish, identity). The adapter's
two linear maps are shared by the candidate places, so the parameters that train are exactly those of the
architecture the search settles on plus 2 + 5 architecture logits per block. The logits start at zero
(uniform), ``up`` at zero (the model starts unchanged), and both train together on the training batches
(one level, first order). ``placement`` / ``activation`` fix either choice instead of searching it.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import LEARNED_ADAPTER_ACTIVATIONS, LEARNED_ADAPTER_PLACEMENTS, LearnedAdapterConfig
from .hooks import (
    ATTENTION_OUTPUT,
    FFN_OUTPUT,
    PREFIX,
    HookedBaseline,
    OwnedHook,
    find_layers,
    out_features,
    require_in_layer,
)

_ACTIVATIONS = {
    "relu": nn.functional.relu,
    "gelu": nn.functional.gelu,
    "tanh": torch.tanh,
    "swish": nn.functional.silu,
    "identity": lambda x: x,
}


class SearchedAdapter(nn.Module):
    """One block's adapter: ``x -> up(act(down(x)))`` with the place and activation mixed by softmax weights."""

    def __init__(self, d: int, r: int, placements: tuple[str, ...], activations: tuple[str, ...]) -> None:
        super().__init__()
        self.placements, self.activations = placements, activations
        self.down, self.up = nn.Linear(d, r), nn.Linear(r, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        # Architecture logits: only for a choice that is searched (more than one candidate).
        self.placement_logits = nn.Parameter(torch.zeros(len(placements))) if len(placements) > 1 else None
        self.activation_logits = nn.Parameter(torch.zeros(len(activations))) if len(activations) > 1 else None

    def placement_weights(self) -> torch.Tensor:
        """Softmax weight of each candidate place (1.0 for a fixed place)."""
        if self.placement_logits is None:
            return self.down.weight.new_ones(1)
        return torch.softmax(self.placement_logits, 0)

    def activation_weights(self) -> torch.Tensor:
        """Softmax weight of each candidate activation (1.0 for a fixed one)."""
        if self.activation_logits is None:
            return self.down.weight.new_ones(1)
        return torch.softmax(self.activation_logits, 0)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """``up(sum_a w_a act_a(down(x)))``: the adapter's output before the place weight."""
        z = self.down(x.to(self.down.weight.dtype))
        w = self.activation_weights()
        mixed = sum(w[i] * _ACTIVATIONS[name](z) for i, name in enumerate(self.activations))
        return self.up(mixed)

    def found(self) -> tuple[str, str]:
        """(place, activation) with the largest weight: the discrete architecture the search points at."""
        return (
            self.placements[int(self.placement_weights().argmax())],
            self.activations[int(self.activation_weights().argmax())],
        )

    def _at(self, place: str, output: torch.Tensor) -> torch.Tensor:
        weight = self.placement_weights()[self.placements.index(place)]
        return output + (weight * self.delta(output)).to(output.dtype)

    def on_attention(self, module, args, output):
        return self._at("attention", output)

    def on_ffn(self, module, args, output):
        return self._at("ffn", output)


class LearnedAdapter(HookedBaseline):
    """Learned-Adapter: one bottleneck adapter per block, its place and activation searched by softmax weights."""

    name = "learned-adapter"
    config_class = LearnedAdapterConfig

    def install(self, model, initialise):
        cfg = self.config
        places = LEARNED_ADAPTER_PLACEMENTS if cfg.placement == "search" else (cfg.placement,)
        acts = LEARNED_ADAPTER_ACTIVATIONS if cfg.activation == "search" else (cfg.activation,)
        for layer in find_layers(model, self.geo):
            sites = {
                "attention": require_in_layer(
                    layer,
                    ATTENTION_OUTPUT,
                    cfg.attention_module,
                    "attention output projection",
                    "attention_module",
                    self.geo,
                ),
                "ffn": require_in_layer(
                    layer, FFN_OUTPUT, cfg.ffn_module, "feed-forward output projection", "ffn_module", self.geo
                ),
            }
            adapter = SearchedAdapter(out_features(sites["ffn"]), cfg.bottleneck, places, acts)
            layer.add_module(PREFIX + "learned_adapter", adapter.to(sites["ffn"].weight.device))
            for place in places:
                sites[place].register_forward_hook(OwnedHook(adapter, f"on_{place}"))

    def adapters(self) -> list[SearchedAdapter]:
        """The per-block adapters, bottom to top."""
        return [m for m in self.modules() if isinstance(m, SearchedAdapter)]

    def architecture(self) -> list[tuple[str, str]]:
        """Per block, bottom to top: the (place, activation) the search weights favour now."""
        return [a.found() for a in self.adapters()]

    def forward(self, input_ids, attention_mask, *args, **kwargs):
        result = super().forward(input_ids, attention_mask, *args, **kwargs)
        adapters = self.adapters()
        if result.loss is not None and adapters and adapters[0].placement_logits is not None:
            # Logged beside the loss: the mean softmax weight on the FFN place over the blocks (0.5 at the start).
            with torch.no_grad():
                share = torch.stack([a.placement_weights()[a.placements.index("ffn")] for a in adapters]).mean()
            result.terms["arch_ffn_weight"] = share
        return result
