"""The contract every prefalign method implements, and the pieces every method shares.

A method is a ``Method`` subclass (an ``nn.Module`` wrapping a backbone) paired with a
``MethodConfig`` dataclass. The registry (``methods/registry.py``) maps names to method classes;
the trainer, inference, generation and the probes talk to a method only through this contract:

* ``name``, ``config_class`` and ``config_defaults`` (a named variant's defaults, e.g. DCPC's ablations);
* ``feeds_prefix``: the method puts keys/values into the attention cache (the backbone must take them);
* ``changes_backbone``: the method changes backbone weights in place (it is built on a copy);
* ``forward`` returns a ``MethodOutput``: ``loss``, ``logits`` (B, C) and named ``terms`` (loss terms
  and gate pass rates), which the trainer logs;
* ``trainable_parameters``, ``learning_rates`` (per-name-prefix optimizer groups) and
  ``trainable_state_dict`` (what a checkpoint holds);
* ``prepare`` (a look at the training data before training: training-free methods fit here),
  ``trainer_callbacks``, and for generation ``prefixes`` / ``soft_prompt`` / ``position_offset``.

Saving and loading go through ``prefalign.methods.registry.save_method`` / ``load_method``.
"""

from __future__ import annotations

import functools
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from transformers.utils import ModelOutput

from ..models.classifier import PrefixClassifier, TaskSpec
from ..models.introspect import ModelGeometry
from .options import HEAD_POOLINGS as HEAD_POOLINGS  # re-exported: base.py was their home
from .options import HeadConfig as HeadConfig
from .options import MethodConfig


@dataclass
class MethodOutput(ModelOutput):
    """What every method's forward returns: ``loss``, ``logits`` (B, C) and ``terms``.

    ``terms`` (named loss terms and gate pass rates, detached) is a plain attribute, not a
    ModelOutput field, so the Trainer's evaluation loop only gathers tensors.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    @property
    def terms(self) -> dict:
        return self.__dict__.setdefault("_terms", {})


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Task loss for hard (one-hot) or soft targets: mean of -sum_c q_c log p_c."""
    return -(target * torch.log_softmax(logits.float(), dim=-1)).sum(-1).mean()


def _keeping_terms(forward):
    """``forward`` that also leaves its output's terms on the method as ``last_terms``: mixed precision
    (Accelerate's fp32 conversion) and DDP rebuild the output from its tensors and drop the attribute."""

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if isinstance(out, MethodOutput):
            self.last_terms = out.terms
        return out

    return wrapper


class Method(nn.Module):
    """Base class of every method: a backbone inside ``self.classifier`` plus what the method trains."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    config_defaults: ClassVar[dict] = {}  # a named variant's defaults (DCPC's ablations, P-Tuning v2)
    feeds_prefix: ClassVar[bool] = False  # keys/values go into the attention cache
    changes_backbone: ClassVar[bool] = True  # backbone weights change in place: build on a copy
    generation_refusal: ClassVar[str | None] = None  # why it cannot train generation tasks; None: it can

    config: MethodConfig
    geo: ModelGeometry
    task: TaskSpec
    classifier: PrefixClassifier
    last_terms: dict  # the terms of the latest forward (see _keeping_terms)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "forward" in vars(cls):
            cls.forward = _keeping_terms(vars(cls)["forward"])

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        geo: ModelGeometry,
        task: TaskSpec,
        config: MethodConfig,
        *,
        initialise: bool = True,
    ) -> None:
        super().__init__()
        self.config, self.geo, self.task = config, geo, task
        self.last_terms = {}

    def build_classifier(self, model: nn.Module, **options) -> PrefixClassifier:
        """``model`` wrapped to give class scores, reading the head options of a ``HeadConfig``."""
        return PrefixClassifier(
            model,
            self.geo,
            self.task,
            head_dropout=self.config.head_dropout,
            head_pooling=self.config.head_pooling,
            **options,
        )

    @classmethod
    def make_config(cls, params: dict | None = None) -> MethodConfig:
        """This method's config: the variant's defaults, then ``params``; unknown keys raise ConfigError."""
        params = {k: v for k, v in (params or {}).items() if k != "name"}
        return cls.config_class.from_dict({**cls.config_defaults, **params, "name": cls.name}, where="method")

    # -- what a method defines --------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        target_dist: torch.Tensor | None = None,
        score_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        **_: object,
    ) -> MethodOutput:
        raise NotImplementedError

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """Every parameter the method trains, by name."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def learning_rates(self) -> dict[str, float | None]:
        """Learning rates that differ from training.learning_rate, by parameter-name prefix (None: the default)."""
        return {}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds: the trained parameters and any state outside the frozen backbone."""
        trained = set(self.trainable_parameters())
        return {k: v for k, v in self.state_dict().items() if k in trained or not k.startswith("classifier.model.")}

    def prepare(self, collator, train_set, seed: int) -> dict[str, float]:
        """Look at the training data once before training (pick a layer, estimate a prior); returns scalars to
        record in the run's metrics."""
        return {}

    def trainer_callbacks(self) -> list:
        """transformers TrainerCallbacks the method needs (AdaLoRA's budget allocation)."""
        return []

    # -- generation (decoders) --------------------------------------------------------------------
    @property
    def language_model(self) -> nn.Module:
        """The backbone (with any adapters in it) that generates answers."""
        return self.classifier.model

    @property
    def position_offset(self) -> bool:
        """Real tokens' positions continue after the prefix (True; prefix methods make it an option) or start at 0."""
        return True

    def generating(self, attention_mask: torch.Tensor, num_beams: int = 1):
        """A context generate() runs in, given the left-padded prompts' mask (input-dependent baselines read it)."""
        return nullcontext()

    def prefixes(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """Each example's prefix ``(N, L, 2, m, kv_dim)`` for generation to put in the cache, or None."""
        return None

    def soft_prompt(self, batch_size: int) -> torch.Tensor | None:
        """Soft tokens ``(B, p, d)`` placed before the input embeddings, or None."""
        return None
