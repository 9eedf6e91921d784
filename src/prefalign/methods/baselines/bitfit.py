"""BitFit (Zaken et al., 2021): train only bias terms. PEFT has no BitFit, so it is written here.

``rank=None`` (the default) is BitFit itself: every existing bias of the backbone trains (linear
layers and layer norms; BERT's pooler only when the head reads it), and every linear layer in the
Transformer blocks that has no bias (LLaMA, Mistral: all of them; Qwen2: all but q/k/v) gets a
zero-initialised bias vector added to its output by a forward hook, so the model starts unchanged.

``rank=r`` is appendix A.1.2's reading ("we initialize the vectors in a reduced dimension r' and
project them back to d_model using a learnable matrix", r' = 8): every linear layer in the blocks
gets an added bias ``P z`` with ``z`` in R^r and ``P`` (out x r) learnable, ``P`` zero-initialised;
the backbone's own biases stay frozen. See docs/methods/baselines.md, "Baselines: readings chosen".
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import BitFitConfig
from .hooks import PREFIX, HookedBaseline, add_output, find_layers, is_linear, ours, out_features


@ours
def _add_bias(module, args, output):
    return add_output(module, output, module.prefalign_bias)


@ours
def _add_projected_bias(module, args, output):
    return add_output(module, output, module.prefalign_bias_proj @ module.prefalign_bias_z)


class BitFit(HookedBaseline):
    """BitFit: bias terms only (hooked zero biases where a linear layer has none)."""

    name = "bitfit"
    config_class = BitFitConfig

    def install(self, model, initialise):
        rank = self.config.rank
        if rank is None:
            reads_pooler = self.config.head_pooling == "pooler"
            for name, p in model.named_parameters():
                if name.endswith("bias") and (reads_pooler or not name.startswith("pooler.")):
                    p.requires_grad_(True)
        for layer in find_layers(model, self.geo):
            for module in layer.modules():
                if not is_linear(module):
                    continue
                weight = module.weight
                kw = dict(device=weight.device, dtype=torch.float32)
                if rank is None:
                    if module.bias is not None:
                        continue
                    module.register_parameter(PREFIX + "bias", nn.Parameter(torch.zeros(out_features(module), **kw)))
                    module.register_forward_hook(_add_bias)
                else:
                    z = torch.randn(rank, **kw) / math.sqrt(rank) if initialise else torch.zeros(rank, **kw)
                    module.register_parameter(PREFIX + "bias_z", nn.Parameter(z))
                    module.register_parameter(
                        PREFIX + "bias_proj", nn.Parameter(torch.zeros(out_features(module), rank, **kw))
                    )
                    module.register_forward_hook(_add_projected_bias)
