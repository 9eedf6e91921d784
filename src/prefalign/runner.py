"""Train, evaluate and predict with any prefalign method: the library API behind the CLI."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import LOWER_IS_BETTER, DataConfig, ExperimentConfig, dump_config
from .data import Collator, PromptFormat, TaskDataset, build_task_spec, load_rotten_tomatoes, read_table
from .environment import versions
from .errors import ConfigError, DataError
from .files import write_text_atomically
from .methods import build_method, load_method, save_method
from .models.loading import LoadedModel, load_backbone

BUILTIN_RT = "builtin:rotten_tomatoes"


class ListDataset(torch.utils.data.Dataset):
    """A torch Dataset over a TaskDataset's examples (the collator tokenises)."""

    def __init__(self, data: TaskDataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        return self.data[i]


def read_split(path: str, cfg: DataConfig, label_names: list[str] | None, limit: int | None, name: str) -> TaskDataset:
    """Read one split from a file with the data section's column settings."""
    return read_table(path, text_column=cfg.text_column, text_pair_column=cfg.text_pair_column,
                      label_column=cfg.label_column, label_names=label_names, choice_columns=cfg.choice_columns,
                      soft_label_column=cfg.soft_label_column, name=name, limit=limit)


def subset(data: TaskDataset, indices, name: str) -> TaskDataset:
    return TaskDataset([data[i] for i in indices], list(data.label_names), name=name)


def load_splits(cfg: DataConfig, seed: int) -> tuple[TaskDataset, TaskDataset, TaskDataset | None]:
    """(train, validation, test) from the data section; validation is carved from train if not given.

    With ``data.task`` the splits come from the task registry; with ``data.shift`` the named
    preference shift rewrites the splits in ``data.shift_splits`` (seeded by ``seed``).
    """
    train, validation, test = _raw_splits(cfg, seed)
    if cfg.max_validation_examples:
        validation = subset(validation, range(min(cfg.max_validation_examples, len(validation))), validation.name)
    if cfg.max_train_examples:
        train = subset(train, range(min(cfg.max_train_examples, len(train))), train.name)
    if test is not None and cfg.max_eval_examples:
        test = subset(test, range(min(cfg.max_eval_examples, len(test))), test.name)
    if cfg.shift:
        from .shifts import apply_shift

        params = {k: v for k, v in cfg.shift.items() if k != "name"}
        shifted = {}
        for split, data in (("train", train), ("validation", validation), ("test", test)):
            if data is not None and split in cfg.shift_splits:
                data, _ = apply_shift(cfg.shift["name"], data, params, seed=params.get("seed", seed))
            shifted[split] = data
        train, validation, test = shifted["train"], shifted["validation"], shifted["test"]
        if train.is_generation:  # BoolQ-PS: styled answers to train on, the same task's labels to score
            validation, test = (as_generation(d) if d is not None and not d.is_generation else d
                                for d in (validation, test))
    return train, validation, test


def as_generation(data: TaskDataset) -> TaskDataset:
    """A classification split as a generation one: the label name is the answer, meta keeps the label."""
    from .data import Example

    examples = []
    for ex in data.examples:
        name = data.label_names[ex.hard_label()]
        examples.append(Example(text=ex.text, text_pair=ex.text_pair, answer=name, references=[name],
                                meta={**ex.meta, "label": name}))
    return TaskDataset(examples, [], name=data.name)


def _raw_splits(cfg: DataConfig, seed: int) -> tuple[TaskDataset, TaskDataset, TaskDataset | None]:
    validation = test = None
    if not cfg.task and (cfg.annotations or {}).get("format"):  # your own multi-annotator files
        from .annotations.files import load_annotated_files

        return load_annotated_files(cfg, seed)
    if cfg.task:
        from .data.tasks import load_task

        train, validation, test = load_task(cfg.task, cfg.path, seed, annotation=_annotation_options(cfg))
        names = list(train.label_names)
    elif not cfg.train:
        raise DataError("data.train is not set; pass a file path, builtin:rotten_tomatoes, or data.task")
    elif cfg.train == BUILTIN_RT:
        train, test = load_rotten_tomatoes(seed=seed)
        names = list(train.label_names)
    else:
        train = read_split(cfg.train, cfg, cfg.label_names, None, "train")
        names = cfg.label_names or list(train.label_names)
    if cfg.validation:
        validation = read_split(cfg.validation, cfg, names, cfg.max_eval_examples, "validation")
    elif validation is None:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_val = max(1, int(round(len(train) * cfg.validation_fraction)))
        if len(train) - n_val < 2:
            raise DataError(f"train has {len(train)} examples: too few to hold out a validation split")
        validation = subset(train, order[:n_val][: cfg.max_eval_examples], "validation")
        train = subset(train, order[n_val:], "train")
    elif cfg.max_eval_examples:
        validation = subset(validation, range(min(cfg.max_eval_examples, len(validation))), validation.name)
    if cfg.test and cfg.test != BUILTIN_RT:
        test = read_split(cfg.test, cfg, names, cfg.max_eval_examples, "test")
    return train, validation, test


def _annotation_options(cfg: DataConfig) -> dict:
    """What a multi-annotator task reads from the data section (other tasks ignore it)."""
    return {"target": cfg.target, "annotations": cfg.annotations, "validation_fraction": cfg.validation_fraction}


def _annotation_keys(*splits: TaskDataset | None) -> list[str]:
    from .annotations.evaluation import annotation_keys

    return annotation_keys(*splits)


def _classification_metrics(validation: TaskDataset, test: TaskDataset | None):
    """Accuracy, or with multi-annotator splits the disagreement-aware scores (F1, soft CE, JSD, ECE, groups)."""
    from .annotations.evaluation import dataset_groups, trainer_metrics
    from .training.trainer import accuracy_metrics

    keys = _annotation_keys(validation, test)
    return trainer_metrics(keys, dataset_groups(validation)) if keys else accuracy_metrics


def checkpoint_metric(name: str, train: TaskDataset, validation: TaskDataset, test: TaskDataset | None) -> str:
    """``training.best_metric`` if the validation metrics will contain it (generation tasks: always loss)."""
    if train.is_generation:
        return "loss"
    keys = _annotation_keys(validation, test)
    available = ["accuracy", "loss"] + (["f1", "soft_ce", "jsd", "ece"] if keys else ["f1_weighted"])
    available += ["worst_group_ce"] if "group_dist" in keys else []
    if name not in available:
        why = {"worst_group_ce": "annotator groups (POPQUORN)", "f1_weighted": "a single-label task (use f1 here)"}
        raise ConfigError(f"training.best_metric={name} needs {why.get(name, 'a multi-annotator task')}; "
                          f"this data gives {', '.join(available)}")
    return name


def prompt_of(cfg: DataConfig, decoder: bool = False) -> PromptFormat:
    """The data section's prompt; a registered task supplies its decoder template and label words."""
    template, verbalizers = cfg.template, cfg.verbalizers
    if cfg.task and decoder:
        from .data.tasks import get_task

        task = get_task(cfg.task)
        template = template or task.decoder_template
        verbalizers = verbalizers or task.verbalizers
    return PromptFormat(template=template, verbalizers=verbalizers)


def generation_metric(cfg: DataConfig) -> str:
    """How a generation task is scored: its registered metric (data.task), else SQuAD-style f1-em."""
    if cfg.task:
        from .data.tasks import get_task

        return get_task(cfg.task).metric
    return "f1-em"


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


@dataclass
class TrainResult:
    model: torch.nn.Module
    backbone: LoadedModel
    metrics: dict
    output_dir: Path
    seconds: float
    log_history: list[dict]  # every training and evaluation log, as written to log_history.json


def _optimizer(model, cfg) -> torch.optim.Optimizer:
    """AdamW with one group per learning rate: the head's, the method's own overrides, the rest."""
    base = cfg.training.learning_rate
    rates = {"classifier.head.": cfg.training.head_learning_rate, **model.learning_rates()}
    groups: dict[float, list] = {}
    for name, p in model.trainable_parameters().items():
        lr = next((r for prefix, r in rates.items() if name.startswith(prefix) and r is not None), base)
        groups.setdefault(lr, []).append(p)
    params = [{"params": ps, "lr": lr} for lr, ps in groups.items()]
    return torch.optim.AdamW(params, lr=base, weight_decay=cfg.training.weight_decay)


def train(cfg: ExperimentConfig, *, backbone: LoadedModel | None = None,
          splits: tuple[TaskDataset, TaskDataset, TaskDataset | None] | None = None,
          resume: bool = False) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.data`` and save the best adapter to ``<output_dir>/adapter``.

    ``resume`` continues from the last complete checkpoint in ``<output_dir>/checkpoints`` of a run
    with the same config; on CPU the result equals the uninterrupted run's bit for bit.
    """
    from transformers import EarlyStoppingCallback, TrainingArguments

    from .training.resume import record_run, resume_point
    from .training.throughput import Throughput
    from .training.trainer import PrefalignTrainer

    t0 = time.time()
    tc = cfg.training
    checkpoint = resume_point(cfg, Path(tc.output_dir) / "checkpoints", resume)  # before any slow work
    seed_everything(tc.seed)
    train_set, val_set, test_set = splits or load_splits(cfg.data, tc.seed)  # bad data fails before a model load
    best_metric = checkpoint_metric(tc.best_metric, train_set, val_set, test_set)
    judge = None
    if tc.judge == "chat" and train_set.is_generation:  # a missing endpoint fails now, not after training
        from .evaluation.judge import ChatJudge

        judge = ChatJudge()
    own_backbone = backbone is None
    backbone = backbone or load_backbone(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code,
                                         dtype=cfg.model.dtype)
    prompt = prompt_of(cfg.data, backbone.geometry.is_decoder)
    spec = build_task_spec(train_set, backbone.geometry, backbone.tokenizer, prompt)  # generation: decoders only
    generation = train_set.is_generation  # LM loss on answers; best checkpoint by eval loss; test by generating
    # A backbone the caller passed in stays untouched by methods that change it (LoRA, full FT ...).
    model = build_method(cfg.method_name, cfg.method_params, backbone, spec, copy_backbone=not own_backbone)
    collator = Collator(backbone.tokenizer, backbone.geometry, train_set.num_classes, prompt, cfg.data.max_length)
    corpus = None
    if tc.perplexity_text:  # a missing corpus fails now, not after training
        from .evaluation.perplexity import read_corpus

        corpus = read_corpus(tc.perplexity_text)
    # A method may look at the data once before training: bias-aware picks its layer, CC/DC estimate a prior.
    prepared = model.prepare(collator, train_set, tc.seed) if hasattr(model, "prepare") else {}
    trains = bool(model.trainable_parameters())  # CC, DC, CRISPR and the untuned model are only evaluated
    out_dir = Path(tc.output_dir)
    use_cpu = tc.device == "cpu" or (tc.device == "auto" and not torch.cuda.is_available())
    args = TrainingArguments(
        output_dir=str(out_dir / "checkpoints"),
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
        use_cpu=use_cpu,
        bf16=tc.bf16,
        report_to=[],
        remove_unused_columns=False,
        label_names=["labels", *_annotation_keys(val_set, test_set)],
        disable_tqdm=not tc.progress,
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
    )
    meta = {"base_model": backbone.name, "label_names": list(train_set.label_names)}
    trainer = PrefalignTrainer(
        model=model, args=args, train_dataset=ListDataset(train_set), eval_dataset=ListDataset(val_set),
        data_collator=collator, compute_metrics=None if generation else _classification_metrics(val_set, test_set),
        optimizers=(_optimizer(model, cfg) if trains else None, None),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience)],
        checkpoint_meta=meta,
    )
    for callback in getattr(model, "trainer_callbacks", lambda: [])():
        trainer.add_callback(callback)
    throughput = Throughput()  # tokens/s in every training log and in metrics.json
    trainer.add_callback(throughput)
    quiet_progress(trainer, tc.progress)
    if trains:
        if checkpoint is None:  # record the config --resume will compare with, now that the inputs are good
            record_run(cfg, out_dir / "checkpoints")
        train_out = trainer.train(resume_from_checkpoint=checkpoint)
        metrics = {"train_loss": float(train_out.training_loss), "train_steps": int(train_out.global_step)}
    else:
        metrics = {"train_steps": 0}
    metrics.update({k: float(v) for k, v in prepared.items()})
    trainer.remove_callback(EarlyStoppingCallback)  # it only reads eval_* metrics during training
    metrics.update({k: float(v) for k, v in trainer.evaluate(metric_key_prefix="validation").items()
                    if isinstance(v, (int, float))})
    if test_set is not None and generation:
        from .generation import evaluate_generation

        scores = evaluate_generation(model, backbone, test_set, generation_metric(cfg.data), collator=collator,
                                     num_beams=tc.num_beams, batch_size=tc.eval_batch_size, judge=judge)
        metrics.update({f"test_{k}": float(v) for k, v in scores.items() if isinstance(v, (int, float))})
        if "judge" in scores:
            metrics["test_judge"] = scores["judge"]
    elif test_set is not None:
        metrics.update({k: float(v) for k, v in trainer.evaluate(ListDataset(test_set), metric_key_prefix="test").items()
                        if isinstance(v, (int, float))})
    if corpus is not None:
        from .evaluation.perplexity import perplexity

        metrics.update(perplexity(model.classifier.model, backbone.tokenizer, corpus, tc.perplexity_tokens,
                                  tc.perplexity_window))
    if throughput.overall() is not None:
        metrics["tokens_per_second"] = throughput.overall()
    seconds = time.time() - t0
    metrics["seconds"] = round(seconds, 2)
    model.eval()
    extra = {"label_names": list(train_set.label_names), "prompt": {"template": prompt.template,
             "verbalizers": prompt.verbalizers}, "max_length": cfg.data.max_length, "versions": versions(),
             "seed": tc.seed}
    if trainer.is_world_process_zero():  # under DDP one process writes the outputs
        save_method(model, out_dir / "adapter", backbone=backbone, extra=extra)
        write_text_atomically(out_dir / "config.yaml", dump_config(cfg))
        write_text_atomically(out_dir / "metrics.json", json.dumps({"metrics": metrics, "versions": versions()},
                                                                   indent=2))
        write_text_atomically(out_dir / "log_history.json", json.dumps(trainer.state.log_history, indent=2))
    return TrainResult(model=model, backbone=backbone, metrics=metrics, output_dir=out_dir, seconds=seconds,
                       log_history=trainer.state.log_history)


def quiet_progress(trainer, progress: bool) -> None:
    """A progress bar (or nothing) instead of a printed dict per log; the logs go to log_history.json."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class BarOnly(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "tokens_per_second" in logs:
                self.training_bar.set_postfix(tokens_per_s=logs["tokens_per_second"], refresh=False)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(BarOnly())


def load_for_inference(adapter_dir: str, backbone: LoadedModel | None = None):
    """(model, backbone, collator) for a saved adapter; the backbone comes from the adapter's config."""
    from .errors import CheckpointError
    from .training.checkpoint import read_checkpoint

    _, meta = read_checkpoint(adapter_dir)
    backbone = backbone or load_backbone(meta["base_model"])
    model, meta = load_method(adapter_dir, backbone)
    model.eval()
    if "label_names" not in meta:
        raise CheckpointError(f"{adapter_dir}: prefalign_config.json lacks label_names")
    prompt = PromptFormat(**meta.get("prompt", {}))
    collator = Collator(backbone.tokenizer, backbone.geometry, len(meta["label_names"]), prompt,
                        meta.get("max_length", 128))
    return model, backbone, collator, meta


@torch.no_grad()
def predict_proba(model, collator: Collator, data: TaskDataset, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Class probabilities (N, C) for every example, in order."""
    from tqdm.auto import tqdm

    model.eval()
    device = next(model.parameters()).device
    out = []
    steps = range(0, len(data), batch_size)
    for start in tqdm(steps, disable=not progress, desc="predict"):
        batch = collator(data.examples[start : start + batch_size])
        batch = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "target_dist", "annotation_dist", "group_dist")}
        out.append(torch.softmax(model(**batch).logits.float(), -1).cpu().numpy())
    return np.concatenate(out)


def evaluate(model, collator: Collator, data: TaskDataset, batch_size: int = 64, progress: bool = False) -> dict:
    """Accuracy (against hard labels) and the number of examples; on multi-annotator data also F1, soft
    cross-entropy, JSD, ECE and per-group scores (prefalign.evaluation.disagreement)."""
    probs = predict_proba(model, collator, data, batch_size, progress)
    labels = np.array([ex.hard_label() for ex in data.examples])
    scores = {"accuracy": float((probs.argmax(-1) == labels).mean()), "n": len(data)}
    if _annotation_keys(data):  # multi-annotator data: the disagreement-aware scores too
        from .annotations.evaluation import dataset_metrics

        p = probs.astype(np.float64)
        scores.update(dataset_metrics(p / p.sum(1, keepdims=True), data))
    return scores
