"""The reward model: any supported backbone, LoRA through PEFT (frozen backbone), full fine-tuning or a
frozen backbone whose pooled features are cached (only the head trains), and a linear head with one output
per attribute (thesis eq. 3.1); pairs compare the attributes' mean (lambda uniform)."""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..models.loading import LoadedModel
from .config import RewardModelConfig
from .data import PreferenceExample

# tuning 'head': pooled features of a frozen backbone, per backbone module and max_length, by text. Kept
# beside the module (weakly), so runs that share a loaded backbone encode each text once.
_FEATURES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def feature_cache(module: nn.Module) -> dict[int, dict[str, torch.Tensor]]:
    """The cache of tuning 'head' for a backbone module: {max_length: {text: pooled feature}}, mutable (a
    benchmark may save it and fill it again in a later process)."""
    return _FEATURES.setdefault(module, {})


class RewardModel(nn.Module):
    """Pooled backbone output -> dropout -> ``Linear(d, m)``: encoders mean-pool real tokens, decoders take
    the last real token (what a causal model has read everything by)."""

    def __init__(self, backbone: LoadedModel, cfg: RewardModelConfig, *, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.geometry, self.tokenizer = cfg, backbone.geometry, backbone.tokenizer
        self.tokenizer.truncation_side = "left"  # the two responses of a dialogue differ at its end
        self.backbone = backbone.model
        for p in self.backbone.parameters():
            p.requires_grad_(cfg.tuning == "full")
        if cfg.tuning == "lora":
            self._inject_lora()
        if cfg.tuning == "head":
            self.backbone.eval()  # features read once without the backbone's dropout
        else:
            _FEATURES.pop(self.backbone, None)  # this backbone may change: cached features would go stale
        torch.manual_seed(seed)
        self.dropout = nn.Dropout(cfg.head_dropout)
        self.head = nn.Linear(backbone.geometry.hidden_size, len(cfg.head_attributes))
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def _inject_lora(self) -> None:
        from peft import LoraConfig, inject_adapter_in_model
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

        kind = getattr(self.backbone.config, "model_type", "")
        targets = self.cfg.target_modules or TARGETS.get(kind)
        if not targets:
            raise ConfigError(f"PEFT has no default LoRA targets for '{kind}'; set model.target_modules")
        peft_cfg = LoraConfig(
            r=self.cfg.lora_r,
            lora_alpha=self.cfg.lora_alpha,
            lora_dropout=self.cfg.lora_dropout,
            target_modules=list(targets),
        )
        inject_adapter_in_model(peft_cfg, self.backbone)  # LoRA's B starts at zero: theta0 is the backbone

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.trainable_parameters().items()}

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(texts, truncation=True, max_length=self.cfg.max_length, padding=True, return_tensors="pt")
        return {k: enc[k].to(self.device) for k in ("input_ids", "attention_mask")}

    def train(self, mode: bool = True) -> RewardModel:
        super().train(mode)
        if self.cfg.tuning == "head":
            self.backbone.eval()  # only the head's dropout samples (MC dropout too)
        return self

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled output ``(B, d)``, float32."""
        if self.geometry.is_decoder:
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            hidden = out.hidden_states[-1]
            positions = torch.arange(hidden.shape[1], device=hidden.device)
            last = (attention_mask * positions).argmax(-1)
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        else:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return pooled.float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Attribute rewards ``(B, m)``."""
        return self.head(self.dropout(self.pool(input_ids, attention_mask)))

    @torch.no_grad()
    def cached_features(self, texts: list[str]) -> torch.Tensor:
        """Pooled features of a frozen backbone (tuning 'head'), each text encoded once, ``(B, d)``."""
        cache = feature_cache(self.backbone).setdefault(self.cfg.max_length, {})
        todo = list(dict.fromkeys(t for t in texts if t not in cache))
        size = 32
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            for text, row in zip(chunk, self.pool(**self.tokenize(chunk)).cpu()):
                cache[text] = row
        return torch.stack([cache[t] for t in texts]).to(self.device)

    def head_forward(self, features: torch.Tensor, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Dropout and the head on pooled features; ``params`` may replace the head's weight and bias."""
        weight = params["head.weight"] if params else self.head.weight
        bias = params["head.bias"] if params else self.head.bias
        return F.linear(self.dropout(features), weight, bias)

    def rewards(self, texts: list[str]) -> torch.Tensor:
        if self.cfg.tuning == "head":
            return self.head_forward(self.cached_features(texts))
        return self(**self.tokenize(texts))


def scalar(rewards: torch.Tensor) -> torch.Tensor:
    """lambda^T r with lambda uniform (eq. 3.1's projection): the attributes' mean, ``(B,)``."""
    return rewards.mean(-1)


def predictions(
    model: RewardModel, examples: list[PreferenceExample], params: dict[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One forward over a mixed batch: (pairs' margins r(chosen) - r(rejected), ratings' predictions (R, m)).

    ``params`` replaces the trainable parameters for this call (DORM's auxiliary u, eq. 3.10)."""
    pairs = [ex for ex in examples if ex.is_pair]
    rated = [ex for ex in examples if not ex.is_pair]
    texts = [ex.chosen for ex in pairs] + [ex.rejected for ex in pairs] + [ex.chosen for ex in rated]
    if model.cfg.tuning == "head":
        out = model.head_forward(model.cached_features(texts), params)
        n = len(pairs)
        margins = scalar(out[:n]) - scalar(out[n : 2 * n]) if n else None
        return margins, (out[2 * n :] if rated else None)
    enc = model.tokenize(texts)
    if params is None:
        out = model(**enc)
    else:
        out = torch.func.functional_call(model, params, (enc["input_ids"], enc["attention_mask"]), strict=False)
    n = len(pairs)
    margins = scalar(out[:n]) - scalar(out[n : 2 * n]) if n else None
    return margins, (out[2 * n :] if rated else None)
