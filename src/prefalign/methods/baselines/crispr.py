"""CRISPR (Yang et al., 2024) as the bias-aware PEFT paper runs it (appendix D): bias neurons found by
gradient-based attribution on 20 training examples, then pruned. Training-free, like CC and DC.

Reading (the paper gives no more detail; see docs/methods/baselines.md): the neurons are the feed-forward
intermediate units (the inputs of each layer's down projection); an example's bias objective is
log p(y^) - log p(y) with y^ its most likely wrong label (as in appendix A's eq. 5); a neuron's
attribution is activation x gradient of that objective at the last prompt token (integrated
gradients with one step), averaged over the examples; the ``num_neurons`` highest are pruned by
zeroing their column of the down projection.
"""

from __future__ import annotations

import random

import torch

from ...errors import ConfigError
from ..bias_aware.layer_selection import resolve_module
from .config import CrisprConfig
from .hooks import find_layers
from .model import BaselineModel


class Crispr(BaselineModel):
    """A decoder with its bias neurons pruned; nothing trains."""

    name = "crispr"
    config_class = CrisprConfig

    def adapt(self, model, tokenizer, initialise):
        if not self.geo.is_decoder or not self.task.verbalizer_ids:
            raise ConfigError(
                "crispr attributes label words read through an LM head: it needs a decoder and a classification task"
            )
        self.projections = [
            resolve_module(b, self.config.ffn_module, self.geo)[1] for b in find_layers(model, self.geo)
        ]
        if self.config.neurons is not None:
            self._prune(self.config.neurons)

    def _prune(self, neurons: list[list[int]]) -> None:
        for layer, unit in neurons:
            if not (0 <= layer < len(self.projections)) or not (0 <= unit < self.projections[layer].weight.shape[1]):
                raise ConfigError(f"method.neurons holds [{layer}, {unit}], outside this model's layers or units")
            with torch.no_grad():
                self.projections[layer].weight[:, unit] = 0

    def attribution(self, batch: dict, gold: torch.Tensor) -> torch.Tensor:
        """(layers, units): activation x gradient of log p(y^) - log p(y) at the last token, mean over examples."""
        acts: list[torch.Tensor] = []

        def capture(module, args):
            x = args[0].detach().requires_grad_(True)
            acts.append(x)
            return (x, *args[1:])

        handles = [p.register_forward_pre_hook(capture) for p in self.projections]
        try:
            with torch.enable_grad():
                logits = self.classifier(batch["input_ids"], batch["attention_mask"], None).logits
                wrong = logits.detach().clone()
                wrong[torch.arange(len(gold)), gold] = float("-inf")
                biased = wrong.argmax(-1)
                rows = torch.arange(len(gold))
                objective = (logits[rows, biased] - logits[rows, gold]).sum()
                grads = torch.autograd.grad(objective, acts)
        finally:
            for h in handles:
                h.remove()
        last = batch["attention_mask"].sum(-1) - 1
        return torch.stack([(a * g)[rows, last].mean(0) for a, g in zip(acts, grads)]).detach()

    def prepare(self, collator, train_set, seed: int) -> dict:
        cfg = self.config
        if cfg.neurons is None:
            rng = random.Random(cfg.probe_seed)
            picked = rng.sample(range(len(train_set)), min(cfg.probe_examples, len(train_set)))
            examples = [train_set.examples[i] for i in picked]
            self.eval()
            scores = self.attribution(collator(examples), torch.tensor([ex.hard_label() for ex in examples]))
            top = torch.topk(scores.flatten(), min(cfg.num_neurons, scores.numel())).indices
            cfg.neurons = [[int(i // scores.shape[1]), int(i % scores.shape[1])] for i in top]
            self._prune(cfg.neurons)
        return {}
