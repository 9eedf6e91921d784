"""Bias-aware PEFT (the bias-aware PEFT paper, section 4): one intermediate layer's o_proj and down_proj, a
refine vector on its input, and the balance losses of eq. 1-4 beside the LM loss."""

from __future__ import annotations

import random

import torch
from torch import nn

from ...errors import ConfigError
from ..base import MethodOutput
from ..baselines.hooks import OwnedHook, find_layers, layer_hidden, with_layer_hidden
from ..baselines.model import BaselineModel
from .config import BiasAwareConfig
from .layer_selection import LayerCurve, interchange_ablation, resolve_module
from .losses import balance_losses, total_loss


class RefineVector(nn.Module):
    """Section 4.2.1's 'refine': a learnable vector added to a layer's input hidden states (zero at start)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.vector = nn.Parameter(torch.zeros(hidden_size))

    def add(self, module, args, kwargs):
        hidden = layer_hidden(args, kwargs)
        return with_layer_hidden(args, kwargs, hidden + self.vector.to(hidden.dtype))


class BiasAwareModel(BaselineModel):
    """The backbone frozen except ``config.modules`` of ``config.layers`` (chosen by interchange ablation)."""

    name = "bias-aware"
    generation_refusal = "it trains classification tasks (label words); use dcpc, ptuning-v2 or a baseline"
    config_class = BiasAwareConfig

    def adapt(self, model: nn.Module, tokenizer, initialise: bool) -> None:
        if not self.geo.is_decoder or not self.task.verbalizer_ids:
            raise ConfigError(
                "bias-aware reads label scores through an LM head: it needs a decoder and a "
                "classification task with one label word per class"
            )
        self.refine = nn.ModuleDict()
        self.layer_curve: LayerCurve | None = None
        if self.config.layers is not None:
            self._install(self.config.layers)

    def _install(self, layers: list[int]) -> None:
        """Unfreeze the chosen modules of ``layers`` and hook a refine vector onto each layer's input."""
        model = self.classifier.model
        blocks = find_layers(model, self.geo)
        bad = [l for l in layers if l >= len(blocks)]
        if bad:
            raise ConfigError(
                f"method.layers {bad} out of range: the model has {len(blocks)} layers (0-{len(blocks) - 1})"
            )
        for l in layers:
            for name in self.config.modules:
                resolve_module(blocks[l], name, self.geo)[1].requires_grad_(True)
            if self.config.refine:
                refine = RefineVector(self.geo.hidden_size)
                self.refine[str(l)] = refine
                blocks[l].register_forward_pre_hook(OwnedHook(refine, "add"), with_kwargs=True)

    def prepare(self, collator, train_set, seed: int) -> dict:
        """Pick the target layer by interchange ablation (appendix A) unless config.layers names it; install."""
        if self.config.layers is not None:
            return {"target_layer": self.config.layers[0]} if len(self.config.layers) == 1 else {}
        rng = random.Random(self.config.probe_seed)
        picked = rng.sample(range(len(train_set)), min(self.config.probe_examples, len(train_set)))
        examples = [train_set.examples[i] for i in picked]
        prompts = collator.prompt_ids(examples)
        gold = [ex.hard_label() for ex in examples]
        curve = interchange_ablation(
            self.classifier.model,
            self.geo,
            prompts,
            gold,
            self.task.verbalizer_ids,
            self.config.probe_component,
            pad_id=collator.tokenizer.pad_token_id or 0,
        )
        self.layer_curve = curve
        self.config.layers = [curve.layer]  # saved with the checkpoint: load rebuilds the same model
        self._install(self.config.layers)
        return {"target_layer": curve.layer}

    def forward(
        self, input_ids, attention_mask, labels=None, target_dist=None, score_mask=None, token_type_ids=None, **_
    ) -> MethodOutput:  # see Method.forward
        if labels is not None and labels.dim() == 2:
            raise ConfigError(f"bias-aware cannot train generation tasks: {self.generation_refusal}")
        out = self.classifier(input_ids, attention_mask, None)
        logprobs = out.logits  # (B, C): each label token's log-probability over the whole vocabulary
        if labels is None:
            return MethodOutput(logits=logprobs)
        cfg = self.config
        lm = -logprobs.gather(1, labels.unsqueeze(1)).mean()  # L_LM: the label token's LM loss
        scores = torch.softmax(logprobs, -1) if cfg.balance_scores == "probs" else logprobs
        contain = nn.functional.one_hot(labels, self.task.num_classes)  # single-label: Contain = the gold label
        bal = balance_losses(scores, contain, cfg.bal2_margin)
        result = MethodOutput(
            loss=total_loss(lm, bal["bal1"], bal["bal2"], cfg.alpha, cfg.beta, cfg.gamma), logits=logprobs
        )
        result.terms.update(
            {
                "loss_lm": lm.detach(),
                "loss_bal1": bal["bal1"].detach(),
                "loss_bal2": bal["bal2"].detach(),
                "labels_both_sides": bal["labels_both_sides"],
            }
        )
        return result
