"""One training run: splits, backbone, method, Trainer, evaluation and the files a run leaves behind."""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, PreTrainedModel, TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..annotations.metrics import (
    ANNOTATION_KEYS,
    annotation_keys,
    annotator_rows_of,
    dataset_groups,
    perspectivist_score,
    trainer_metrics,
)
from ..data import Collator, TaskDataset, build_task_spec
from ..errors import ConfigError, ModelLoadError
from ..evaluation.judge import ChatJudge
from ..evaluation.perplexity import perplexity, read_corpus
from ..generation import evaluate_generation
from ..methods import Method, build_method, method_class, save_method
from ..methods.conditioning import AnnotatorVocab, annotator_inputs
from ..methods.export import invocation
from ..models.loading import LoadedModel, load_backbone
from ..models.prefix import checkpoint_prefix_layers, uncheckpoint_prefix_layers
from ..utils.atomic_files import write_text_atomically
from ..utils.environment import versions
from .config import CHECKPOINT_METRICS, LOWER_IS_BETTER, ExperimentConfig, dump_config
from .resume import record_run, resume_point
from .splits import ListDataset, Splits, load_splits
from .throughput import Throughput
from .trainer import LiveProgress, PlainProgress, PrefalignTrainer, accuracy_metrics, output_is_terminal


@dataclass
class TrainResult:
    model: torch.nn.Module
    backbone: LoadedModel
    metrics: dict
    output_dir: Path
    seconds: float
    log_history: list[dict]  # every training and evaluation log, as written to log_history.json


def train(
    cfg: ExperimentConfig,
    *,
    backbone: LoadedModel | None = None,
    splits: Splits | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train ``cfg.method`` on ``cfg.data`` and save the best adapter to ``<output_dir>/adapter``.

    ``resume`` continues from the last complete checkpoint in ``<output_dir>/checkpoints`` of a run
    with the same config; on CPU the result equals the uninterrupted run's bit for bit. A folder that
    already holds a run is refused (ConfigError) unless ``overwrite`` (its run files are then deleted
    once the data has loaded) or ``resume``.
    """
    t0 = time.time()
    tc = cfg.training
    out_dir = Path(tc.output_dir)
    check_output_dir(out_dir, resume=resume, overwrite=overwrite)  # before any slow work
    if tc.device == "cuda" and not torch.cuda.is_available():  # the Trainer would fall back to the CPU silently
        raise ConfigError("training.device is cuda, but torch sees no GPU on this machine; use auto or cpu")
    checkpoint = resume_point(cfg, out_dir / "checkpoints", resume)
    set_seed(tc.seed)
    train_set, val_set, test_set = splits or load_splits(cfg.data, tc.seed)  # bad data fails before a model load
    if overwrite and not resume:
        clear_run(out_dir)
    best_metric = checkpoint_metric(tc.best_metric, train_set, val_set, test_set)
    generation = train_set.is_generation  # LM loss on answers; best checkpoint by eval loss; test by generating
    refusal = method_class(cfg.method.name).generation_refusal if generation else None
    if refusal:  # before a model load
        raise ConfigError(f"method {cfg.method.name} cannot train a generation task ({train_set.name}): {refusal}")
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
    if cfg.method.annotator_conditioning and cfg.data.target != "annotators":
        raise ConfigError(
            f"method.annotator_conditioning={cfg.method.annotator_conditioning} trains on each annotator's rows: "
            "set data.target: annotators"
        )
    vocab = AnnotatorVocab.from_examples(train_set.examples) if cfg.method.annotator_conditioning else None
    model = build_method(cfg.method, backbone, spec, copy_backbone=not own_backbone, annotators=vocab)
    if tc.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    collator = Collator(
        backbone.tokenizer,
        backbone.geometry,
        train_set.num_classes,
        prompt,
        cfg.data.max_length,
        **annotator_inputs(vocab),
    )
    # A method may look at the data once before training: bias-aware picks its layer, CC/DC estimate a prior.
    # What it fills into its config (PTLoss's searched eps) is not part of the run as given: --resume compares
    # the config as given, and prepares again (the search resumes from its own record).
    as_given = copy.deepcopy(cfg)
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
            record_run(as_given, out_dir / "checkpoints")
        try:
            train_out = trainer.train(resume_from_checkpoint=checkpoint)
        finally:  # a backbone the caller passed in (shared by prefix methods) leaves without the checkpointing
            if tc.gradient_checkpointing and model.feeds_prefix and not own_backbone:
                uncheckpoint_prefix_layers(backbone.model)
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
        error = annotator_error(model, collator, test_set, tc.eval_batch_size)
        if error is not None:
            metrics["test_annotator_error"] = error
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


# What a run (and the commands that read it) leave in its folder: an old one's are stale beside a new run.
RUN_ARTEFACTS = (
    "adapter",
    "checkpoints",
    "config.yaml",
    "metrics.json",
    "log_history.json",
    "report.html",
    "probes",
)


def check_output_dir(out_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds a run (unless ``resume`` or ``overwrite``) and one that cannot be created,
    before the model loads."""
    held = [name for name in RUN_ARTEFACTS if (out_dir / name).exists()]
    if held and not (resume or overwrite):
        raise ConfigError(
            f"{out_dir} already holds a run ({', '.join(held[:3])}); pass --overwrite to replace it, --resume to "
            "continue it, or choose another training.output_dir"
        )
    existing = out_dir
    while not existing.exists() and existing != existing.parent:  # nothing is created before the data loads
        existing = existing.parent
    if not existing.is_dir():
        why = f"{existing} is a file"
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = f"{existing} is not writable"
    else:
        return
    raise ConfigError(f"cannot write to training.output_dir {out_dir} ({why}); choose a folder you can write to")


def clear_run(out_dir: Path) -> None:
    """Delete what an earlier run left in ``out_dir`` (RUN_ARTEFACTS; other files stay)."""
    for name in RUN_ARTEFACTS:
        path = out_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def _numbers(scores: dict) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}


@torch.no_grad()
def annotator_error(model: Method, collator: Collator, data: TaskDataset, batch_size: int) -> float | None:
    """Le-Wi-Di 2025's perspectivist error rate on an annotated split: each (item, annotator) row predicted
    for that annotator (an annotator-conditioned model) or as the item (any other model); None without
    annotator labels."""
    found = annotator_rows_of(data)
    if found is None:
        return None
    rows, owner = found
    if collator.annotators is None:  # one prediction per item serves each of its annotators
        rows, owner = list(data.examples), list(range(len(data)))
        owner_rows = [i for i, ex in enumerate(data.examples) for _ in ex.meta["annotators"]]
    model.eval()
    device = next(model.parameters()).device
    labels = []
    for start in range(0, len(rows), batch_size):
        batch = collator(rows[start : start + batch_size])
        batch = {k: v.to(device) for k, v in batch.items() if k not in ("labels", "target_dist", *ANNOTATION_KEYS)}
        labels += model(**batch).logits.argmax(-1).tolist()
    if collator.annotators is None:
        labels, owner = [labels[i] for i in owner_rows], owner_rows
    return perspectivist_score(data, labels, owner)


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
    interactive = output_is_terminal()
    if train_set.is_generation:
        metrics = None
    else:  # accuracy, or with multi-annotator splits the disagreement-aware scores (F1, soft CE, JSD, ECE, groups)
        metrics = trainer_metrics(keys, dataset_groups(val_set)) if keys else accuracy_metrics
    trainer = PrefalignTrainer(
        model=model,
        args=training_arguments(
            cfg, best_metric, ["labels", *keys], train_set.is_generation, tc.progress and interactive
        ),
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
    quiet_progress(trainer, tc.progress, interactive)
    return trainer


def training_arguments(
    cfg: ExperimentConfig, best_metric: str, label_names: list[str], generation: bool, bars: bool | None = None
) -> TrainingArguments:
    """transformers' TrainingArguments from the training section (``training.trainer_args`` passed through);
    ``bars``: whether tqdm bars may be drawn (default: training.progress)."""
    tc = cfg.training
    bars = tc.progress if bars is None else bars
    if not uses_gpu(tc.device):
        refuse_sharding_on_cpu(tc.trainer_args)
    try:
        return TrainingArguments(
            output_dir=str(Path(tc.output_dir) / "checkpoints"),
            learning_rate=tc.learning_rate,
            weight_decay=tc.weight_decay,
            per_device_train_batch_size=tc.batch_size,
            per_device_eval_batch_size=tc.eval_batch_size,
            gradient_accumulation_steps=tc.gradient_accumulation_steps,
            num_train_epochs=tc.epochs,
            max_steps=tc.max_steps,
            lr_scheduler_type=tc.lr_scheduler,
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
            use_cpu=not uses_gpu(tc.device),
            bf16=tc.bf16,
            fp16=tc.fp16,
            report_to=list(tc.report_to) or "none",
            remove_unused_columns=False,
            label_names=label_names,
            disable_tqdm=not bars,
            include_num_input_tokens_seen="non_padding",
            dataloader_num_workers=0,
            **tc.trainer_args,
        )
    except (ValueError, TypeError, ImportError) as exc:  # a value transformers refuses (fp16 on a CPU, a tracker)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"the training section does not make valid TrainingArguments: {first}") from None


def refuse_sharding_on_cpu(trainer_args: dict) -> None:
    """Refuse FSDP and DeepSpeed on CPU, which Accelerate would silently replace by DDP or one process.

    accelerate 1.16's AcceleratorState switches to FSDP only for multi-GPU-like distributed types
    (accelerate/state.py: ``elif self.distributed_type in [DistributedType.MULTI_GPU, ...]``, which
    leaves out MULTI_CPU) and to DeepSpeed only ``and not cpu``; on CPU the plugin is dropped without a
    word and the model is wrapped in DDP. torch's own FSDP2 (``fully_shard``) does run on CPU with gloo,
    but not through the Trainer. docs/performance.md, "FSDP and DeepSpeed", has the details.
    """
    for key, env in (("fsdp", "ACCELERATE_USE_FSDP"), ("deepspeed", "ACCELERATE_USE_DEEPSPEED")):
        if trainer_args.get(key) or os.environ.get(env, "false").lower() == "true":
            raise ConfigError(
                f"{key} on CPU is not run by Accelerate (it falls back to DDP without saying so): "
                f"remove training.trainer_args.{key} (and {env}) to train on CPU, where DDP under torchrun "
                "is supported, or set training.device=cuda"
            )


def uses_gpu(device: str) -> bool:
    """training.device: 'cuda', or 'auto' on a machine with a GPU."""
    return device == "cuda" or (device == "auto" and torch.cuda.is_available())


def enable_gradient_checkpointing(model: Method) -> None:
    """Recompute the backbone's activations in the backward pass (training.gradient_checkpointing).

    The Trainer would ask the method (not a transformers model) to do it, so the transformers model inside
    it is asked here; non-reentrant checkpointing lets gradients reach the prefixes and adapters of a frozen
    backbone. Methods that feed a prefix through the attention cache get prefalign's own per-layer
    checkpointing (models/prefix.py: ``checkpoint_prefix_layers``), which keeps the cache transformers' drops.
    """
    inner = next((m for m in model.language_model.modules() if isinstance(m, PreTrainedModel)), None)
    if inner is None or not inner.supports_gradient_checkpointing:
        raise ConfigError("this backbone cannot checkpoint its activations; drop training.gradient_checkpointing")
    if model.feeds_prefix:
        try:
            checkpoint_prefix_layers(inner)
        except ModelLoadError as exc:
            raise ConfigError(str(exc)) from None
        return
    kwargs = {"use_reentrant": False}
    if hasattr(inner, "activation_checkpointing_enable"):
        inner.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def optimizer(model: Method, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    """AdamW with one group per learning rate: the head's, the method's own overrides, the rest.

    The group at training.learning_rate (the prefixes, adapters or whatever the method trains by default)
    comes first: the Trainer logs the first group's rate as ``learning_rate``, so the logs and the report's
    chart follow the rate the run was configured with; every other group is logged as
    ``learning_rate_<its first parameter-name prefix>`` (see PrefalignTrainer.log).
    """
    base = cfg.training.learning_rate
    rates = {"classifier.head.": cfg.training.head_learning_rate, **model.learning_rates()}
    groups: dict[str, tuple[float, list]] = {}  # group name -> (learning rate, parameters)
    for name, p in model.trainable_parameters().items():
        prefix = next((pre for pre, r in rates.items() if name.startswith(pre) and r is not None), None)
        lr = base if prefix is None else rates[prefix]
        key = "default" if lr == base else prefix.rstrip(".")
        groups.setdefault(key, (lr, []))[1].append(p)
    order = sorted(groups, key=lambda k: k != "default")  # the default group first, the others as first met
    params = [{"params": groups[k][1], "lr": groups[k][0], "group": k} for k in order]
    return torch.optim.AdamW(params, lr=base, weight_decay=cfg.training.weight_decay)


def quiet_progress(trainer: PrefalignTrainer, progress: bool, interactive: bool) -> None:
    """How training shows itself: a tqdm bar with the loss and the latest validation scores on a terminal,
    one plain line per log (no carriage returns or cursor codes) when the output is redirected, nothing
    when training.progress is off. Every log also goes to log_history.json."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not progress:
        return
    trainer.add_callback(LiveProgress() if interactive else PlainProgress())


def write_run(
    out_dir: Path,
    cfg: ExperimentConfig,
    model: Method,
    backbone: LoadedModel,
    extra: dict,
    metrics: dict,
    log_history: list[dict],
) -> None:
    """The files a finished run leaves: adapter/, config.yaml, metrics.json and log_history.json; a report
    written before (of the run's earlier state, when it was resumed) is deleted, since it no longer describes it."""
    (out_dir / "report.html").unlink(missing_ok=True)
    save_method(model, out_dir / "adapter", backbone=backbone, extra=extra)
    write_text_atomically(out_dir / "config.yaml", dump_config(cfg))
    write_text_atomically(out_dir / "metrics.json", json.dumps({"metrics": metrics, "versions": versions()}, indent=2))
    write_text_atomically(out_dir / "log_history.json", json.dumps(log_history, indent=2))
