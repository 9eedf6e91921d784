"""Training-free baselines of the bias-aware PEFT paper (appendix D): the untuned model, contextual
calibration (CC, Zhao et al., 2021) and domain-context calibration (DC, Fei et al., 2023).

They run through the same runner as every trained method: ``prepare`` estimates the label prior
once from the training split, nothing has ``requires_grad``, so the runner skips the optimiser
steps and only evaluates. Predictions are the label words' probabilities divided by the prior and
renormalised (W = diag(p_cf)^-1, b = 0), i.e. log-probabilities minus log p_cf.
"""

from __future__ import annotations

import random

import torch
from torch import nn

from ...data.examples import Example
from ...errors import ConfigError
from ..base import MethodOutput, soft_cross_entropy
from .config import ContextualCalibrationConfig, DomainCalibrationConfig, ZeroShotConfig
from .model import BaselineModel


def calibrate(probs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Zhao et al. (2021), eq. 'q = softmax(W p + b)' read as W = diag(prior)^-1, b = 0: p / prior, renormalised."""
    q = probs / prior
    return q / q.sum(-1, keepdim=True)


def domain_texts(texts: list[str], n: int, seed: int) -> list[str]:
    """Fei et al. (2023): ``n`` random in-domain texts, words drawn (with repeats, by frequency) from
    the task's texts, each as long as the texts' mean word count."""
    words = [w for t in texts for w in t.split()]
    if not words:
        raise ConfigError("domain-context calibration needs training texts with words")
    length = max(1, round(len(words) / max(1, len(texts))))
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(length)) for _ in range(n)]


class Calibrated(BaselineModel):
    """A frozen decoder whose label probabilities are divided by a prior estimated in ``prepare``."""

    name = "zero-shot"
    config_class = ZeroShotConfig
    changes_backbone = False  # nothing in the backbone changes: no copy needed

    def adapt(self, model, tokenizer, initialise):
        if not self.geo.is_decoder or not self.task.verbalizer_ids:
            raise ConfigError(
                f"{self.name} reads label words through an LM head: it needs a decoder and a classification task"
            )
        self.register_buffer("log_prior", torch.full((self.task.num_classes,), 0.0))

    def inputs(self, train_set) -> list[Example]:
        """The inputs whose mean prediction is the prior; none for the untuned model."""
        return []

    @torch.no_grad()
    def prepare(self, collator, train_set, seed: int) -> dict:
        examples = self.inputs(train_set)
        if not examples:
            return {}
        self.eval()
        batch = collator(examples)
        out = self.classifier(batch["input_ids"], batch["attention_mask"], None)
        probs = torch.softmax(out.logits.float(), -1).mean(0)  # p_cf over the label words
        self.log_prior.copy_(torch.log(probs))
        return {}

    def forward(
        self, input_ids, attention_mask, labels=None, target_dist=None, score_mask=None, token_type_ids=None, **_
    ) -> MethodOutput:  # see Method.forward
        out = self.classifier(input_ids, attention_mask, None)
        logits = torch.log_softmax(out.logits.float(), -1) - self.log_prior  # log(p / p_cf), up to a constant
        if labels is None:
            return MethodOutput(logits=logits)
        loss = soft_cross_entropy(logits, nn.functional.one_hot(labels, self.task.num_classes).float())
        return MethodOutput(loss=loss, logits=logits)


def _blank(text: str, pair: bool) -> Example:
    return Example(text=text, text_pair=text if pair else None, label=0)


ZeroShot = Calibrated  # its registered name is zero-shot


class ContextualCalibration(Calibrated):
    name = "cc"
    config_class = ContextualCalibrationConfig

    def inputs(self, train_set):
        pair = any(ex.text_pair is not None for ex in train_set.examples[:1])
        return [_blank(t, pair) for t in self.config.content_free]


class DomainCalibration(Calibrated):
    name = "dc"
    config_class = DomainCalibrationConfig

    def inputs(self, train_set):
        cfg = self.config
        pair = any(ex.text_pair is not None for ex in train_set.examples[:1])
        texts = domain_texts([ex.text for ex in train_set.examples], cfg.num_samples, cfg.sample_seed)
        return [_blank(t, pair) for t in texts]
