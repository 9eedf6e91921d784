"""A transformers.Trainer that logs every loss term and gate rate and checkpoints only trained parts."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import defaultdict

import numpy as np
import torch
from transformers import Trainer
from transformers.trainer_callback import ExportableState, ProgressCallback, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..annotations.metrics import ANNOTATION_KEYS
from ..errors import CheckpointError, TrainingError
from ..methods.checkpoint import WEIGHTS_FILE, check_state_matches, read_checkpoint, write_checkpoint
from ..utils.atomic_files import write_text_atomically
from . import resume


def accuracy_metrics(eval_pred) -> dict[str, float]:
    """Accuracy and weighted F1 (the bias-aware paper's Table 2 metric) of argmax class scores against hard labels."""
    from sklearn.metrics import f1_score

    logits, labels = eval_pred.predictions, eval_pred.label_ids
    logits = logits[0] if isinstance(logits, tuple) else logits
    preds, labels = np.asarray(logits).argmax(-1), np.asarray(labels)
    return {
        "accuracy": float((preds == labels).mean()),
        "f1_weighted": float(f1_score(labels, preds, average="weighted", zero_division=0)),
    }


# Logged values that describe the run's speed or bookkeeping, not how well it learns: left out of the display.
_NOT_SHOWN = ("runtime", "samples_per_second", "steps_per_second", "total_flos", "epoch", "num_input_tokens_seen")


def output_is_terminal() -> bool:
    """Both standard streams are terminals: a redrawn bar is fine (otherwise logs get plain lines)."""
    return all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))


def shown_scores(logs: dict) -> dict[str, float]:
    """What a log shows the user: ``loss`` and the loss terms of a training log, or ``val_<metric>`` for each
    score of a validation log (its ``eval_`` keys), without speeds and counters; values as logged."""
    out = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or key.endswith(_NOT_SHOWN):
            continue
        if key.startswith("eval_"):
            out["val_" + key[len("eval_") :]] = value
        elif not key.startswith(("train_", "learning_rate", "grad_norm")):
            out[key] = value
    return out


def format_scores(scores: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())


class LiveProgress(ProgressCallback):
    """The training bar with the latest loss and validation scores in its postfix (terminals)."""

    KEEP = ("loss", "tokens_per_second")  # of a training log; every score of a validation log

    def __init__(self) -> None:
        super().__init__()
        self.latest: dict[str, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.training_bar is None or not logs:
            return
        scores = shown_scores(logs)
        if any(k.startswith("val_") for k in scores):
            self.latest.update(scores)
        else:
            self.latest.update({k: v for k, v in scores.items() if k in self.KEEP})
        self.training_bar.set_postfix(
            {k: f"{v:.4g}" if isinstance(v, float) else v for k, v in self.latest.items()}, refresh=False
        )


class PlainProgress(TrainerCallback):
    """One line per log on standard output, for redirected output: no carriage returns, no cursor codes."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        scores = shown_scores(logs)
        if "learning_rate" in logs:
            scores["lr"] = logs["learning_rate"]
        if scores:
            print(f"step {state.global_step}/{state.max_steps}  {format_scores(scores)}", flush=True)


class PrefalignTrainer(Trainer):
    """Trainer for prefalign methods: Accelerate/DDP/FSDP/DeepSpeed come from the parent unchanged.

    * every named term in ``outputs.terms`` (loss terms and gate pass rates) is averaged over the
      steps between two logs and logged beside ``loss``;
    * a non-finite loss stops training with a TrainingError instead of corrupting the prefixes;
    * checkpoints hold only the method's trained parts (safetensors), never the frozen backbone;
    * a checkpoint is written to a staging folder and renamed into place when complete, and it also
      holds the method's own generators and the running loss sums, so a resumed run repeats the
      uninterrupted one bit for bit on CPU (see docs/reliability.md).
    """

    def __init__(self, *args, checkpoint_meta: dict | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checkpoint_meta = checkpoint_meta or {}
        self._term_sums: dict[str, float] = defaultdict(float)
        self._term_counts: dict[str, int] = defaultdict(int)
        self._resumed_sums: dict | None = None  # read from a checkpoint, applied at the first step
        # DDP (pytree) and mixed precision (Accelerate's fp32 conversion) rebuild a forward's output from its
        # tensors, dropping the ``terms`` attribute: keep them as the method's own forward left them.
        self._forward_terms: dict = {}
        self.model.register_forward_hook(self._keep_terms)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self._forward_terms = {}
        outputs = model(**{k: v for k, v in inputs.items() if k not in ANNOTATION_KEYS})
        loss = outputs.loss
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {loss.item()} at step {self.state.global_step}; lower training.learning_rate "
                "or the method's lambda weights"
            )
        if model.training:
            for name, value in (outputs.terms or self._forward_terms).items():
                self._term_sums[name] += float(value)
                self._term_counts[name] += 1
        return (loss, outputs) if return_outputs else loss

    def _keep_terms(self, module, args, output) -> None:
        self._forward_terms = dict(getattr(module, "last_terms", None) or getattr(output, "terms", None) or {})

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_counts:
            for name, total in self._term_sums.items():
                logs[name] = round(total / self._term_counts[name], 6)
            self._term_sums.clear()
            self._term_counts.clear()
        if "learning_rate" in logs and self.lr_scheduler is not None:
            # The Trainer logs the first group's rate; the others (an encoder head's, DCPC's PCM) by their name.
            for group, lr in zip(self.optimizer.param_groups[1:], self.lr_scheduler.get_last_lr()[1:]):
                logs[f"learning_rate_{group.get('group', 'other')}"] = lr
        super().log(logs, start_time)

    # -- checkpoints: trained parts only -----------------------------------------------------------
    def _unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        model = self._unwrapped()
        meta = {"method": model.name, "method_config": model.config.to_dict(), **self.checkpoint_meta}
        write_checkpoint(output_dir, model.trainable_state_dict(), meta)

    def _load_trained_parts(self, folder: str) -> None:
        state, _ = read_checkpoint(folder)
        model = self._unwrapped()
        check_state_matches(state, model.trainable_state_dict(), folder)
        model.load_state_dict(state, strict=False)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self._load_trained_parts(resume_from_checkpoint)
        self._load_prefalign_state(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        best = self.state.best_model_checkpoint
        if best and os.path.exists(os.path.join(best, WEIGHTS_FILE)):
            self._load_trained_parts(best)

    def _get_train_sampler(self, train_dataset=None):
        """Examples with ``meta['weight']`` (CROWDLAB quality) are drawn in proportion to it, with
        replacement and the run's seed; otherwise the Trainer's shuffled order."""
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        examples = getattr(getattr(dataset, "data", None), "examples", None)
        if not examples or "weight" not in examples[0].meta:
            return super()._get_train_sampler(train_dataset)
        weights = torch.tensor([max(float(ex.meta["weight"]), 1e-6) for ex in examples], dtype=torch.double)
        generator = torch.Generator().manual_seed(
            self.args.data_seed if self.args.data_seed is not None else self.args.seed
        )
        return torch.utils.data.WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)

    # -- crash-safe checkpoints and exact resumption ------------------------------------------------
    def _rank_file(self, pattern: str) -> str:
        return pattern.format(rank=resume.rank_suffix(self.args.world_size, self.args.process_index))

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer._save_checkpoint (transformers 5.23), written to a staging folder renamed into place
        once every process has written its part: a kill mid-save leaves the previous checkpoints whole."""
        run_dir = self._get_output_dir(trial=trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging, final = os.path.join(run_dir, resume.STAGING_PREFIX + name), os.path.join(run_dir, name)
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        if self.hp_search_backend is None and trial is None:
            self.store_flos()
        self.save_model(staging, _internal_call=True)
        self.accelerator.wait_for_everyone()  # the weights writer replaces the folder: others write after it
        best_step = self.state.best_global_step
        if best_step:
            best = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{best_step}")
            if best_step == self.state.global_step or os.path.exists(best):
                self.state.best_model_checkpoint = best
        if not self.args.save_only_model:
            self._save_optimizer_and_scheduler(staging)
            self._save_scaler(staging)
            self._save_rng_state(staging)
        self._save_prefalign_state(staging)
        if self.args.should_save:
            for cb in [
                cb for cb in self.callback_handler.callbacks + [self.control] if isinstance(cb, ExportableState)
            ]:
                cb_name, cb_state = cb.__class__.__name__, cb.state()
                if isinstance(self.state.stateful_callbacks[cb_name], list):
                    self.state.stateful_callbacks[cb_name].append(cb_state)
                else:
                    self.state.stateful_callbacks[cb_name] = cb_state
            self.state.save_to_json(os.path.join(staging, "trainer_state.json"))
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            resume.publish(staging, final)
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()

    def _save_prefalign_state(self, folder: str) -> None:
        """What the Trainer does not checkpoint: running loss sums and the method's generators."""
        os.makedirs(folder, exist_ok=True)
        sums = {
            "tr_loss": float(self._tr_loss.item()),
            "total_loss_scalar": self._total_loss_scalar,
            "globalstep_last_logged": self._globalstep_last_logged,
            "term_sums": dict(self._term_sums),
            "term_counts": dict(self._term_counts),
        }
        write_text_atomically(os.path.join(folder, self._rank_file(resume.STATE_FILE)), json.dumps(sums))
        resume.save_generators(self._unwrapped(), os.path.join(folder, self._rank_file(resume.RNG_FILE)))

    def _load_prefalign_state(self, folder: str) -> None:
        resume.load_generators(self._unwrapped(), os.path.join(folder, self._rank_file(resume.RNG_FILE)))
        path = os.path.join(folder, self._rank_file(resume.STATE_FILE))
        if not os.path.exists(path):
            raise CheckpointError(
                f"{path} is missing: {folder} was not written by this version of prefalign "
                "(or by another number of processes); start the run again without --resume"
            )
        try:
            self._resumed_sums = json.loads(open(path, encoding="utf-8").read())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path} is not valid JSON ({exc.msg})") from None

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        with resume.readable_state(checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)

    def _load_rng_state(self, checkpoint) -> None:
        with resume.readable_state(checkpoint):
            super()._load_rng_state(checkpoint)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._resumed_sums is not None:  # the Trainer zeroed these when the loop began
            s, self._resumed_sums = self._resumed_sums, None
            self._tr_loss = torch.tensor(s["tr_loss"], dtype=self._tr_loss.dtype, device=self._tr_loss.device)
            self._total_loss_scalar = s["total_loss_scalar"]
            self._globalstep_last_logged = s["globalstep_last_logged"]
            self._initial_global_step = 0  # train_loss averages over the whole run, not this call's share
            self._term_sums = defaultdict(float, s["term_sums"])
            self._term_counts = defaultdict(int, s["term_counts"])
        return super().training_step(model, inputs, num_items_in_batch)
