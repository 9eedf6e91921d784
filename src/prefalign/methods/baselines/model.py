"""The shared body of every baseline: a PrefixClassifier with no prefix, plus what the method adds.

A baseline changes the backbone in place (PEFT adapters, hooks) or feeds soft tokens; the
classifier, templates, losses, trainer and metrics are the ones DCPC uses, so the methods
differ only in what they train.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import ConfigError
from ..base import Method, MethodOutput, soft_cross_entropy
from .config import BaselineConfig, FullFineTuningConfig


class BaselineModel(Method):
    """Frozen backbone + task head; subclasses add trainable parts in ``adapt``."""

    config_class = BaselineConfig
    freeze_backbone = True

    def __init__(self, model, tokenizer, geo, task, config, *, initialise=True) -> None:  # see Method
        super().__init__(model, tokenizer, geo, task, config)
        self.classifier = self.build_classifier(model, freeze=self.freeze_backbone)
        self.adapt(model, tokenizer, initialise)

    # -- what a baseline defines --------------------------------------------------------------------
    def adapt(self, model: nn.Module, tokenizer, initialise: bool) -> None:
        """Add the method's trainable parts to ``model`` (in place) or to ``self``."""

    def regularizer(self) -> torch.Tensor | None:
        """An extra training loss the method defines (AdaLoRA's orthogonality term), or None."""
        return None

    # -- shared ---------------------------------------------------------------------------------------
    def forward(
        self, input_ids, attention_mask, labels=None, target_dist=None, score_mask=None, token_type_ids=None, **_
    ) -> MethodOutput:  # see Method.forward
        if labels is not None and labels.dim() == 2:  # token labels: a generation task (decoders)
            return self._generation_forward(input_ids, attention_mask, labels)
        soft = self.soft_prompt(input_ids.shape[0])
        out = self.classifier(
            input_ids, attention_mask, None, score_mask=score_mask, token_type_ids=token_type_ids, prompt_embeds=soft
        )
        if target_dist is None and labels is not None:
            target_dist = nn.functional.one_hot(labels, self.task.num_classes).float()
        if target_dist is None:
            return MethodOutput(logits=out.logits)
        loss = soft_cross_entropy(out.logits, target_dist)
        result = MethodOutput(loss=loss, logits=out.logits)
        result.terms["loss_task"] = loss.detach()
        extra = self.regularizer() if self.training else None
        if extra is not None:
            result.terms["loss_regularizer"] = extra.detach()
            result.loss = loss + extra
        return result

    def _generation_forward(self, input_ids, attention_mask, labels) -> MethodOutput:
        """The LM loss on answer tokens; soft tokens (prompt tuning, LPT's placeholders) precede the prompt."""
        if self.generation_refusal:
            raise ConfigError(f"{self.name} cannot train generation tasks: {self.generation_refusal}")
        soft = self.soft_prompt(input_ids.shape[0])
        out = self.classifier.lm_forward(input_ids, attention_mask, None, labels, prompt_embeds=soft)
        result = MethodOutput(loss=out.loss, logits=torch.log(out.answer_probs.clamp(min=1e-12)))
        result.terms["loss_task"] = out.loss.detach()
        extra = self.regularizer() if self.training else None
        if extra is not None:
            result.terms["loss_regularizer"] = extra.detach()
            result.loss = out.loss + extra
        return result


class FullFineTuning(BaselineModel):
    """Full-FT: the whole backbone and the head train."""

    name = "full-ft"
    config_class = FullFineTuningConfig
    freeze_backbone = False

    def adapt(self, model, tokenizer, initialise):
        pooler = getattr(model, "pooler", None)
        if pooler is not None and self.config.head_pooling != "pooler":
            pooler.requires_grad_(False)  # the head does not read it: it would get no gradient
