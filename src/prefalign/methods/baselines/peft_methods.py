"""Baselines PEFT implements: LoRA, AdaLoRA, (IA)^3 and prompt tuning, on prefalign's classifier.

PEFT's tuners are injected into the frozen backbone in place (``inject_adapter_in_model``, or
AdaLoRA's tuner so its rank allocator can run); prompt tuning uses PEFT's ``PromptEmbedding``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import TrainerCallback

from ...errors import ConfigError
from .config import AdaLoraBaselineConfig, IA3BaselineConfig, LoraBaselineConfig, PromptTuningConfig
from .model import BaselineModel


def _model_type(model: nn.Module) -> str:
    return getattr(model.config, "model_type", "")


def _targets(model: nn.Module, given: list[str] | None, mapping: dict, method: str) -> list[str]:
    """The user's target modules, or PEFT's default for this architecture (a ConfigError if it has none)."""
    if given:
        return list(given)
    kind = _model_type(model)
    if kind not in mapping:
        raise ConfigError(
            f"PEFT has no default {method} target modules for model type '{kind}'; set "
            "method.target_modules to the names of the linear layers to adapt"
        )
    return list(mapping[kind])


class LoraBaseline(BaselineModel):
    """LoRA (Hu et al., 2021) through PEFT."""

    name = "lora"
    config_class = LoraBaselineConfig

    def adapt(self, model, tokenizer, initialise):
        from peft import LoraConfig, inject_adapter_in_model
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

        cfg = self.config
        targets = _targets(model, cfg.target_modules, TARGETS, "LoRA")
        if [t.lower() for t in targets] == ["all-linear"]:  # PEFT's shorthand: every linear layer but the LM head
            targets = "all-linear"
        peft_cfg = LoraConfig(r=cfg.r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets)
        inject_adapter_in_model(peft_cfg, model)


class IA3Baseline(BaselineModel):
    """(IA)^3 (Liu et al., 2022) through PEFT."""

    name = "ia3"
    config_class = IA3BaselineConfig

    def adapt(self, model, tokenizer, initialise):
        from peft import IA3Config, inject_adapter_in_model
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
        )
        from peft.utils.constants import (
            TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS,
        )

        cfg = self.config
        targets = _targets(model, cfg.target_modules, TARGETS, "(IA)3")
        feedforward = cfg.feedforward_modules
        if feedforward is None:
            feedforward = [m for m in FF.get(_model_type(model), []) if m in targets] if not cfg.target_modules else []
        inject_adapter_in_model(IA3Config(target_modules=targets, feedforward_modules=feedforward), model)


class AdaLoraBaseline(BaselineModel):
    """AdaLoRA (Zhang et al., 2023) through PEFT's tuner, whose rank allocator runs after each step."""

    name = "adalora"
    config_class = AdaLoraBaselineConfig

    def adapt(self, model, tokenizer, initialise):
        from peft import AdaLoraConfig
        from peft.tuners.adalora import AdaLoraModel
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING as TARGETS

        cfg = self.config
        # total_step is a placeholder until training starts (set_total_steps); PEFT requires one now.
        peft_cfg = AdaLoraConfig(
            init_r=cfg.init_r,
            target_r=cfg.target_r,
            lora_alpha=cfg.lora_alpha,
            deltaT=cfg.delta_t,
            orth_reg_weight=cfg.orth_reg_weight,
            total_step=1000,
            tinit=0,
            tfinal=0,
            target_modules=_targets(model, cfg.target_modules, TARGETS, "AdaLoRA"),
        )
        tuner = AdaLoraModel(model, peft_cfg, "default")
        self._tuner = [tuner]  # a list: registering it as a submodule would list the backbone twice

    @property
    def tuner(self):
        return self._tuner[0]

    def set_total_steps(self, total: int) -> None:
        """Fit AdaLoRA's three phases (warm-up, pruning, final) to a run of ``total`` optimiser steps."""
        conf = self.tuner.peft_config["default"]
        conf.total_step = max(int(total), 3)
        conf.tinit = int(self.config.tinit_ratio * conf.total_step)
        conf.tfinal = int(self.config.tfinal_ratio * conf.total_step)
        if conf.tinit >= conf.total_step - conf.tfinal:
            conf.tinit, conf.tfinal = 0, 0

    def regularizer(self):
        """AdaLoRA's orthogonality loss on P and Q (what PEFT's AdaLoraModel.forward adds)."""
        weight = self.config.orth_reg_weight
        if weight == 0:
            return None
        terms = []
        for name, p in self.classifier.model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and p.requires_grad:
                cov = p @ p.T if "lora_A" in name else p.T @ p
                terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device)))
        return weight * torch.stack(terms).mean() if terms else None

    def trainer_callbacks(self) -> list:
        return [AdaLoraCallback(self)]

    def ranks(self) -> dict[str, int]:
        """The rank each adapted module keeps (non-zero singular values)."""
        out = {}
        for name, p in self.classifier.model.named_parameters():
            if "lora_E" in name:
                out[name.replace(".lora_E.default", "")] = int((p.detach() != 0).sum())
        return out


class AdaLoraCallback(TrainerCallback):
    """Calls AdaLoRA's ``update_and_allocate`` after each optimiser step, before gradients are zeroed."""

    def __init__(self, method: AdaLoraBaseline) -> None:
        self.method = method

    def on_train_begin(self, args, state, control, **kwargs):
        self.method.set_total_steps(state.max_steps)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.method.tuner.update_and_allocate(state.global_step)


class PromptTuningBaseline(BaselineModel):
    """Prompt tuning (Lester et al., 2021): PEFT's PromptEmbedding, soft tokens before the input."""

    name = "prompt-tuning"
    config_class = PromptTuningConfig

    def adapt(self, model, tokenizer, initialise):
        from peft import PromptTuningConfig as PeftPromptConfig
        from peft.tuners.prompt_tuning import PromptEmbedding

        cfg = self.config
        n = cfg.num_virtual_tokens
        words = model.get_input_embeddings()
        peft_cfg = PeftPromptConfig(
            task_type="FEATURE_EXTRACTION",
            num_virtual_tokens=n,
            token_dim=self.geo.hidden_size,
            num_transformer_submodules=1,
            num_layers=self.geo.num_layers,
            num_attention_heads=1,
        )
        self.prompt = PromptEmbedding(peft_cfg, words)
        if initialise and cfg.prompt_init == "text":
            # PEFT's TEXT init, with the tokenizer already in hand (PEFT's would reload it by name).
            ids = tokenizer(cfg.prompt_init_text, add_special_tokens=False)["input_ids"]
            ids = (ids * (n // max(len(ids), 1) + 1))[:n]
            with torch.no_grad():
                self.prompt.embedding.weight.copy_(words(torch.tensor(ids)).float())
        self.register_buffer("prompt_ids", torch.arange(n), persistent=False)

    def soft_prompt(self, batch_size: int) -> torch.Tensor:
        return self.prompt(self.prompt_ids).unsqueeze(0).expand(batch_size, -1, -1)
