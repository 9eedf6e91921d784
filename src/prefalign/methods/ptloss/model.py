"""Distillation into any supported student with PTLoss or a baseline loss (thesis chapter 4)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from ...errors import DataError
from ..base import MethodOutput
from ..baselines.model import FullFineTuning
from . import losses
from .config import PTLossConfig
from .search import SearchSettings, search_coefficients
from .teacher import teacher_distributions


class _Progress(TrainerCallback):
    """Tells the method how far training is (Annealing KD's temperature) and stops early-stopped KD."""

    def __init__(self, method: PTLossDistill) -> None:
        self.method = method

    def on_step_begin(self, args, state, control, **kwargs):
        self.method.progress = state.global_step / max(state.max_steps, 1)

    def on_step_end(self, args, state, control, **kwargs):
        cfg = self.method.config
        if cfg.loss == "eskd" and state.global_step >= cfg.eskd_fraction * state.max_steps:
            control.should_training_stop = True


class PTLossDistill(FullFineTuning):
    """The student (every weight and the head train) fitted to the teacher's class distributions.

    ``prepare`` computes the teacher's distributions on the training split (cached; the data's own soft
    labels when ``teacher`` is empty) and puts them into the examples' ``soft_label``, so every batch's
    ``target_dist`` is the teacher's; with ``loss: ptloss`` and no ``eps`` it runs Algorithm 2 first.
    Evaluation batches carry the gold labels, whose one-hot targets the same loss scores.
    """

    name = "ptloss"
    config_class = PTLossConfig

    def __init__(self, model, tokenizer, geo, task, config, *, initialise=True) -> None:  # see Method
        super().__init__(model, tokenizer, geo, task, config, initialise=initialise)
        self.progress = 0.0
        self.search_record: dict | None = None

    def trainer_callbacks(self) -> list:
        return [_Progress(self)]

    def prepare(self, collator, train_set, seed: int) -> dict[str, float]:
        cfg = self.config
        gold = np.array([-1 if ex.label is None else ex.label for ex in train_set.examples])
        if cfg.teacher:
            probs, info = teacher_distributions(
                cfg.teacher, train_set, batch_size=cfg.teacher_batch_size, cache=cfg.teacher_cache or None
            )
            default_dir = Path(info["cache_file"]).with_name("search-" + Path(info["cache_file"]).stem)
        else:  # the data's own targets (soft labels: the annotators' distribution) are the teacher
            if not len(train_set):
                raise DataError("the distillation set is empty")
            probs = np.array([ex.target(train_set.num_classes) for ex in train_set.examples], dtype=float)
            info, default_dir = {"cached": False}, None
        train_set.examples[:] = [
            dataclasses.replace(ex, soft_label=[float(v) for v in row])
            for ex, row in zip(train_set.examples, probs, strict=True)
        ]
        out = {"teacher_cached": float(info["cached"])}
        if (gold >= 0).any():
            labelled = gold >= 0
            out["teacher_train_accuracy"] = float((probs[labelled].argmax(1) == gold[labelled]).mean())
        if cfg.loss == "ptloss" and cfg.eps is None:
            labelled = [i for i, g in enumerate(gold) if g >= 0]
            if not labelled:
                raise DataError(
                    "the coefficient search has an empty validation set: no training example has a gold label; "
                    "give labelled examples or set method.eps"
                )
            picked = sorted(random.Random(cfg.search_seed).sample(labelled, min(cfg.search_examples, len(labelled))))
            settings = SearchSettings(
                orders=cfg.search_orders,
                trials=cfg.search_trials,
                low=cfg.search_low,
                high=cfg.search_high,
                per_class=cfg.per_class,
                seed=cfg.search_seed,
                solver=cfg.solver,
                distance=cfg.q_distance,
                entropy=cfg.q_entropy,
            )
            if default_dir is not None and settings != SearchSettings(seed=settings.seed):
                # other search settings get their own folder beside the teacher cache, so two rows of a grid
                # (eq. 4.20 as printed and the distance-only Q, say) do not restart each other's search
                key = hashlib.sha256(json.dumps(dataclasses.asdict(settings), sort_keys=True).encode())
                default_dir = default_dir.with_name(default_dir.name + "-" + key.hexdigest()[:8])
            directory = cfg.search_dir or default_dir
            record = search_coefficients(probs[picked], gold[picked], settings, directory)
            self.search_record = record
            cfg.eps = record["best"]["eps"]  # saved with the checkpoint's config
            out.update(
                search_best_q=record["best"]["q"],
                search_q_kl=record["q_kl"],
                search_best_order=float(record["best"]["order"]),
            )
        return out

    def distillation_loss(self, teacher: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The configured loss of the teacher's distributions (B, C) and the student's logits (B, C)."""
        cfg = self.config
        if cfg.loss == "ptloss":
            return losses.pt_loss(teacher, logits, cfg.eps if cfg.eps is not None else [0.0])
        if cfg.loss in ("kl", "eskd"):
            return losses.kl_loss(teacher, logits)
        if cfg.loss == "temperature":
            return losses.temperature_loss(teacher, logits, cfg.temperature)
        if cfg.loss == "label-smoothing":
            return losses.label_smoothing_loss(teacher, logits, cfg.smoothing)
        if cfg.loss == "focal":
            return losses.focal_loss(teacher, logits, cfg.focal_gamma)
        if cfg.loss == "flooding":
            return losses.flooding(losses.kl_loss(teacher, logits), cfg.flood_level)
        return losses.annealing_loss(teacher, logits, self.progress, cfg.annealing_max_temperature)

    def forward(
        self, input_ids, attention_mask, labels=None, target_dist=None, score_mask=None, token_type_ids=None, **_
    ) -> MethodOutput:  # see Method.forward
        out = self.classifier(input_ids, attention_mask, None, score_mask=score_mask, token_type_ids=token_type_ids)
        if target_dist is None and labels is not None:
            target_dist = torch.nn.functional.one_hot(labels, self.task.num_classes).float()
        if target_dist is None:
            return MethodOutput(logits=out.logits)
        loss = self.distillation_loss(target_dist.to(out.logits.device), out.logits)
        result = MethodOutput(loss=loss, logits=out.logits)
        result.terms["loss_distill"] = loss.detach()
        return result
