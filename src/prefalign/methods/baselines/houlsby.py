"""Houlsby adapters (Houlsby et al., 2019): bottleneck layers inside every Transformer block.
PEFT has no Houlsby adapter, so it is written here.

In every block, one adapter acts on the output of the attention output projection and one on
the output of the FFN output projection, before the residual add (BERT: attention.output.dense
and output.dense; LLaMA/Mistral/Qwen2: self_attn.o_proj and mlp.down_proj; GPT-2: attn.c_proj
and mlp.c_proj): ``h + up(act(down(h)))`` with a bottleneck of 18 (appendix A.1.2). ``up`` starts
at zero, so the model starts unchanged. Two departures from the paper: the adapter sits before
the projection's dropout (BERT, GPT-2) rather than after it, which changes nothing at
evaluation; and the layer norms stay frozen (Houlsby et al. also train them), so the method
trains the adapters and the task head only.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import HoulsbyAdapterConfig
from .hooks import (
    ATTENTION_OUTPUT,
    FFN_OUTPUT,
    PREFIX,
    HookedBaseline,
    add_output,
    find_layers,
    ours,
    out_features,
    require_in_layer,
)

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    """``x -> up(act(down(x)))``: d -> r -> d, ``up`` zero-initialised (the adapter adds nothing at first)."""

    def __init__(self, d: int, r: int, activation: str = "gelu") -> None:
        super().__init__()
        self.down, self.act, self.up = nn.Linear(d, r), ACTIVATIONS[activation](), nn.Linear(r, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x.to(self.down.weight.dtype))))


@ours
def _adapter_hook(module, args, output):
    return add_output(module, output, module.prefalign_adapter(output))


class HoulsbyAdapter(HookedBaseline):
    """Houlsby-Adapter: two bottleneck adapters per block, after attention and after the FFN."""

    name = "houlsby"
    config_class = HoulsbyAdapterConfig

    def install(self, model, initialise):
        cfg = self.config
        for layer in find_layers(model, self.geo):
            targets = [
                require_in_layer(
                    layer,
                    ATTENTION_OUTPUT,
                    cfg.attention_module,
                    "attention output projection",
                    "attention_module",
                    self.geo,
                ),
                require_in_layer(
                    layer, FFN_OUTPUT, cfg.ffn_module, "feed-forward output projection", "ffn_module", self.geo
                ),
            ]
            for module in targets:
                adapter = BottleneckAdapter(out_features(module), cfg.bottleneck, cfg.activation)
                module.add_module(PREFIX + "adapter", adapter.to(module.weight.device))
                module.register_forward_hook(_adapter_hook)
