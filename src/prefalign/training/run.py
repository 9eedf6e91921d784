"""One training run: splits, backbone, method, Trainer, evaluation and the files a run leaves behind."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..annotations.metrics import annotation_keys, dataset_groups, trainer_metrics
from ..data import Collator, TaskDataset, build_task_spec
from ..errors import ConfigError
from ..evaluation.judge import ChatJudge
from ..evaluation.perplexity import perplexity, read_corpus
from ..generation import evaluate_generation
from ..methods import Method, build_method, save_method
from ..methods.export import invocation
from ..models.loading import LoadedModel, load_backbone
from ..utils.atomic_files import write_text_atomically
from ..utils.environment import versions
from .config import CHECKPOINT_METRICS, LOWER_IS_BETTER, ExperimentConfig, dump_config
from .resume import record_run, resume_point
from .splits import ListDataset, Splits, load_splits
from .throughput import Throughput
from .trainer import PrefalignTrainer, accuracy_metrics


@dataclass
class TrainResult:
    model: torch.nn.Module
    backbone: LoadedModel
    metrics: dict
    output_dir: Path
    seconds: float
    log_history: list[dict]  # every training and evaluation log, as written to log_history.json


def train(
    cfg: ExperimentConfig, *, backbone: LoadedModel | None = None, splits: Splits | None = None, resume: bool = False
) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.data`` and save the best adapter to ``<output_dir>/adapter``.

    ``resume`` continues from the last complete checkpoint in ``<output_dir>/checkpoints`` of a run
    with the same config; on CPU the result equals the uninterrupted run's bit for bit.
    """
    t0 = time.time()
    tc = cfg.training
    out_dir = Path(tc.output_dir)
    checkpoint = resume_point(cfg, out_dir / "checkpoints", resume)  # before any slow work
    set_seed(tc.seed)
    train_set, val_set, test_set = splits or load_splits(cfg.data, tc.seed)  # bad data fails before a model load
    best_metric = checkpoint_metric(tc.best_metric, train_set, val_set, test_set)
    generation = train_set.is_generation  # LM loss on answers; best checkpoint by eval loss; test by generating
    # Inputs that would only fail after training fail now: the judge's endpoint, the perplexity corpus.
    judge = ChatJudge() if tc.judge == "chat" and generation else None
    corpus = read_corpus(tc.perplexity_text) if tc.perplexity_text else None
    own_backbone = backbone is None
    backbone = backbone or load_backbone(
        cfg.model.name, trust_remote_code=cfg.model.trust_remote_code, dtype=cfg.model.dtype
    )
    prompt = cfg.data.prompt(backbone.geometry.is_decoder)
    spec = build_task_spec(train_set, backbone.geometry, backbone.tokenizer, prompt)  # generation: decoders only
    # A backbone the caller passed in stays untouched by methods that change it (LoRA, full FT ...).
    model = build_method(cfg.method, backbone, spec, copy_backbone=not own_backbone)
    collator = Collator(backbone.tokenizer, backbone.geometry, train_set.num_classes, prompt, cfg.data.max_length)
    # A method may look at the data once before training: bias-aware picks its layer, CC/DC estimate a prior.
    prepared = model.prepare(collator, train_set, tc.seed)
    trains = bool(model.trainable_parameters())  # CC, DC, CRISPR and the untuned model are only evaluated
    throughput = Throughput()  # tokens/s in every training log and in metrics.json
    trainer = build_trainer(
        cfg,
        model,
        collator,
        (train_set, val_set, test_set),
        best_metric,
        trains,
        {"base_model": backbone.name, "label_names": list(train_set.label_names)},
        throughput,
    )
    if trains:
        if checkpoint is None:  # record the config --resume will compare with, now that the inputs are good
            record_run(cfg, out_dir / "checkpoints")
        train_out = trainer.train(resume_from_checkpoint=checkpoint)
        metrics = {"train_loss": float(train_out.training_loss), "train_steps": int(train_out.global_step)}
    else:
        metrics = {"train_steps": 0}
    metrics.update({k: float(v) for k, v in prepared.items()})
    trainer.remove_callback(EarlyStoppingCallback)  # it only reads eval_* metrics during training
    metrics.update(_numbers(trainer.evaluate(metric_key_prefix="validation")))
    if test_set is not None and generation:
        scores = evaluate_generation(
            model,
            backbone,
            test_set,
            cfg.data.generation_metric,
            collator=collator,
            num_beams=tc.num_beams,
            batch_size=tc.eval_batch_size,
            judge=judge,
        )
        metrics.update({f"test_{k}": v for k, v in _numbers(scores).items()})
        if "judge" in scores:
            metrics["test_judge"] = scores["judge"]
    elif test_set is not None:
        metrics.update(_numbers(trainer.evaluate(ListDataset(test_set), metric_key_prefix="test")))
    if corpus is not None:
        metrics.update(
            perplexity(model.language_model, backbone.tokenizer, corpus, tc.perplexity_tokens, tc.perplexity_window)
        )
    if throughput.overall() is not None:
        metrics["tokens_per_second"] = throughput.overall()
    seconds = time.time() - t0
    metrics["seconds"] = round(seconds, 2)
    model.eval()
    if trainer.is_world_process_zero():  # under DDP one process writes the outputs
        extra = {
            "label_names": list(train_set.label_names),
            "max_length": cfg.data.max_length,
            "seed": tc.seed,
            "prompt": {"template": prompt.template, "verbalizers": prompt.verbalizers},
            "versions": versions(),
            "card": {"metrics": metrics, "config": cfg.to_dict(), "command": invocation()},  # the model card's
        }
        write_run(out_dir, cfg, model, backbone, extra, metrics, trainer.state.log_history)
    return TrainResult(
        model=model,
        backbone=backbone,
        metrics=metrics,
        output_dir=out_dir,
        seconds=seconds,
        log_history=trainer.state.log_history,
    )


def _numbers(scores: dict) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}


def mean_logged(logs: list[dict], key: str) -> float | None:
    """Mean of a logged training term over a run's logs; None when the method does not log it."""
    values = [entry[key] for entry in logs if key in entry]
    return sum(values) / len(values) if values else None


def checkpoint_metric(name: str, train: TaskDataset, validation: TaskDataset, test: TaskDataset | None) -> str:
    """``training.best_metric`` if the validation metrics will contain it (generation tasks: always loss)."""
    if train.is_generation:
        return "loss"
    keys = annotation_keys(validation, test)
    has = {"any", "annotations" if keys else "single-label"} | ({"groups"} if "group_dist" in keys else set())
    available = [metric for metric, (_, needs) in CHECKPOINT_METRICS.items() if needs in has]
    if name not in available:
        why = {
            "single-label": "a single-label task (use f1 here)",
            "annotations": "a multi-annotator task",
            "groups": "annotator groups (POPQUORN)",
        }
        raise ConfigError(
            f"training.best_metric={name} needs {why[CHECKPOINT_METRICS[name][1]]}; "
            f"this data gives {', '.join(available)}"
        )
    return name


def build_trainer(
    cfg: ExperimentConfig,
    model: Method,
    collator: Collator,
    splits: Splits,
    best_metric: str,
    trains: bool,
    checkpoint_meta: dict,
    throughput: Throughput,
) -> PrefalignTrainer:
    """The Trainer for one run: arguments from the training section, metrics for the task, the method's
    callbacks, ``throughput`` (before the progress bar, which shows what it logs)."""
    tc = cfg.training
    train_set, val_set, test_set = splits
    keys = annotation_keys(val_set, test_set)
    if train_set.is_generation:
        metrics = None
    else:  # accuracy, or with multi-annotator splits the disagreement-aware scores (F1, soft CE, JSD, ECE, groups)
        metrics = trainer_metrics(keys, dataset_groups(val_set)) if keys else accuracy_metrics
    trainer = PrefalignTrainer(
        model=model,
        args=training_arguments(cfg, best_metric, ["labels", *keys], train_set.is_generation),
        train_dataset=ListDataset(train_set),
        eval_dataset=ListDataset(val_set),
        data_collator=collator,
        compute_metrics=metrics,
        optimizers=(optimizer(model, cfg) if trains else None, None),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience)],
        checkpoint_meta=checkpoint_meta,
    )
    for callback in (*model.trainer_callbacks(), throughput):
        trainer.add_callback(callback)
    quiet_progress(trainer, tc.progress)
    return trainer


def training_arguments(
    cfg: ExperimentConfig, best_metric: str, label_names: list[str], generation: bool
) -> TrainingArguments:
    """transformers' TrainingArguments from the training section."""
    tc = cfg.training
    return TrainingArguments(
        output_dir=str(Path(tc.output_dir) / "checkpoints"),
        learning_rate=tc.learning_rate,
        weight_decay=tc.weight_decay,
        per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.eval_batch_size,
        num_train_epochs=tc.epochs,
        max_steps=tc.max_steps,
        lr_scheduler_type="linear",
        warmup_steps=tc.warmup_ratio,
        eval_strategy="steps",
        eval_steps=tc.eval_steps,
        save_strategy="steps",
        save_steps=tc.eval_steps,
        save_total_limit=tc.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model=best_metric,
        greater_is_better=best_metric not in LOWER_IS_BETTER,
        prediction_loss_only=generation,
        logging_steps=tc.logging_steps,
        seed=tc.seed,
        data_seed=tc.seed,
        use_cpu=tc.device == "cpu" or (tc.device == "auto" and not torch.cuda.is_available()),
        bf16=tc.bf16,
        report_to=[],
        remove_unused_columns=False,
        label_names=label_names,
        disable_tqdm=not tc.progress,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )


def optimizer(model: Method, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """AdamW with one group per learning rate: the head's, the method's own overrides, the rest."""
    base = cfg.training.learning_rate
    rates = {"classifier.head.": cfg.training.head_learning_rate, **model.learning_rates()}
    groups: dict[float, list] = {}
    for name, p in model.trainable_parameters().items():
        lr = next((r for prefix, r in rates.items() if name.startswith(prefix) and r is not None), base)
        groups.setdefault(lr, []).append(p)
    params = [{"params": ps, "lr": lr} for lr, ps in groups.items()]
    return torch.optim.AdamW(params, lr=base, weight_decay=cfg.training.weight_decay)


def quiet_progress(trainer: PrefalignTrainer, progress: bool) -> None:
    """A progress bar (or nothing) instead of a printed dict per log; the logs go to log_history.json."""

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "tokens_per_second" in logs:
                self.training_bar.set_postfix(tokens_per_s=logs["tokens_per_second"], refresh=False)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(BarOnly())


def write_run(
    out_dir: Path,
    cfg: ExperimentConfig,
    model: Method,
    backbone: LoadedModel,
    extra: dict,
    metrics: dict,
    log_history: list[dict],
) -> None:
    """The files a finished run leaves: adapter/, config.yaml, metrics.json and log_history.json."""
    save_method(model, out_dir / "adapter", backbone=backbone, extra=extra)
    write_text_atomically(out_dir / "config.yaml", dump_config(cfg))
    write_text_atomically(out_dir / "metrics.json", json.dumps({"metrics": metrics, "versions": versions()}, indent=2))
    write_text_atomically(out_dir / "log_history.json", json.dumps(log_history, indent=2))
