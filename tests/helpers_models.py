"""Shared helpers for the model tests: tiny backbones with other geometries, and ready-made batches."""

from __future__ import annotations

import torch

from conftest import make_tokenizer, toy_choice, toy_sentiment
from prefalign.data.collator import Collator, PromptFormat, build_task_spec
from prefalign.models.loading import LoadedModel
from prefalign.models.tiny import tiny_backbone

DECODER_PROMPT = PromptFormat(template="review: {text} sentiment:")


def build_variant(kind: str, vocab_file: str, seed: int = 0, **overrides) -> LoadedModel:
    """A tiny backbone like conftest.build_tiny (prefalign.models.tiny), with config fields overridden."""
    return tiny_backbone(kind, make_tokenizer(vocab_file), seed, **overrides)


def prompt_for(lm: LoadedModel) -> PromptFormat:
    return DECODER_PROMPT if lm.geometry.is_decoder else PromptFormat()


def sentiment_setup(lm: LoadedModel, n: int = 32, soft: bool = True):
    """(dataset, task spec, collator) for toy_sentiment on ``lm``."""
    ds = toy_sentiment(n, soft=soft)
    prompt = prompt_for(lm)
    spec = build_task_spec(ds, lm.geometry, lm.tokenizer, prompt)
    return ds, spec, Collator(lm.tokenizer, lm.geometry, ds.num_classes, prompt)


def choice_setup(lm: LoadedModel, n: int = 8):
    ds = toy_choice(n)
    prompt = PromptFormat()
    spec = build_task_spec(ds, lm.geometry, lm.tokenizer, prompt)
    return ds, spec, Collator(lm.tokenizer, lm.geometry, ds.num_classes, prompt)


def batches(dataset, collator, batch_size: int = 8):
    """Every batch of ``dataset`` in order, collated."""
    return [collator(dataset.examples[i : i + batch_size]) for i in range(0, len(dataset), batch_size)]


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def train_steps(model, data, steps: int = 5, lr: float = 1e-2, weight_decay: float = 0.0) -> list[float]:
    """AdamW steps over ``data`` in turn; the losses. Every loss must be finite.

    With the default weight_decay=0 a parameter only changes if it received a gradient.
    """
    opt = torch.optim.AdamW(list(model.trainable_parameters().values()), lr=lr, weight_decay=weight_decay)
    model.train()
    losses = []
    for step in range(steps):
        out = model(**data[step % len(data)])
        assert torch.isfinite(out.loss)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    return losses


def train_with_schedule(model, data, steps: int, lr: float, output_dir) -> None:
    """AdamW steps that also drive the method's own Trainer callbacks (AdaLoRA's budget schedule) as the
    Trainer would: on_train_begin with ``steps`` as max_steps, then on_optimizer_step after every step."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    state, control = TrainerState(max_steps=steps), TrainerControl()
    args = TrainingArguments(output_dir=str(output_dir), report_to=[])
    callbacks = model.trainer_callbacks()
    for cb in callbacks:
        cb.on_train_begin(args, state, control)
    opt = torch.optim.AdamW(list(model.trainable_parameters().values()), lr=lr)
    model.train()
    for step in range(1, steps + 1):
        model(**data[step % len(data)]).loss.backward()
        opt.step()
        state.global_step = step
        for cb in callbacks:
            cb.on_optimizer_step(args, state, control)
        opt.zero_grad()
