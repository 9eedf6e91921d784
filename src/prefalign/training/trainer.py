"""A transformers.Trainer that logs every loss term and gate rate and checkpoints only trained parts."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import torch
from transformers import Trainer

from ..errors import TrainingError
from ..training.checkpoint import WEIGHTS_FILE, check_state_matches, read_checkpoint, write_checkpoint


def accuracy_metrics(eval_pred) -> dict[str, float]:
    """Accuracy of argmax class scores against hard labels."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    return {"accuracy": float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())}


class PrefalignTrainer(Trainer):
    """Trainer for prefalign methods: Accelerate/DDP/FSDP/DeepSpeed come from the parent unchanged.

    * every named term in ``outputs.terms`` (loss terms and gate pass rates) is averaged over the
      steps between two logs and logged beside ``loss``;
    * a non-finite loss stops training with a TrainingError instead of corrupting the prefixes;
    * checkpoints hold only the method's trained parts (safetensors), never the frozen backbone.
    """

    def __init__(self, *args, checkpoint_meta: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint_meta = checkpoint_meta or {}
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_counts: dict[str, int] = defaultdict(int)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        loss = outputs.loss
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at step {self.state.global_step}; lower training.learning_rate "
                "or the method's lambda weights"
            )
        if model.training:
            for name, value in outputs.terms.items():
                self._term_sums[name] += float(value)
                self._term_counts[name] += 1
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_counts:
            for name, total in self._term_sums.items():
                logs[name] = round(total / self._term_counts[name], 6)
            self._term_sums.clear()
            self._term_counts.clear()
        super().log(logs, start_time)

    # -- checkpoints: trained parts only -----------------------------------------------------------
    def _unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        model = self._unwrapped()
        meta = {"method": getattr(model, "method_name", "dcpc"), "method_config": model.config.to_dict(),
                **self.checkpoint_meta}
        write_checkpoint(output_dir, model.trainable_state_dict(), meta)

    def _load_trained_parts(self, folder: str) -> None:
        state, _ = read_checkpoint(folder)
        model = self._unwrapped()
        check_state_matches(state, model.trainable_state_dict(), folder)
        model.load_state_dict(state, strict=False)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self._load_trained_parts(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint
        if best and os.path.exists(os.path.join(best, WEIGHTS_FILE)):
            self._load_trained_parts(best)

