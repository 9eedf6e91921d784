"""The experiment config: model, data, method and training sections, from YAML plus --set overrides.

Every section is resolved here, once, when the config is loaded: ``method`` becomes its method's
config dataclass, ``data.annotations`` an ``AnnotationConfig``, ``data.shift`` a ``ShiftConfig``, and
``data.task`` is looked up in the task registry. Everything downstream receives these objects.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..annotations.config import AnnotationConfig
from ..annotations.targets import TARGETS
from ..data import PromptFormat
from ..errors import ConfigError
from ..methods.catalog import SPECS, method_config, resolve_method
from ..methods.options import MethodConfig
from ..shifts import ShiftConfig
from ..tasks import TaskDefinition, get_task
from ..utils.config_base import ConfigBase, deep_merge, parse_overrides, read_yaml_mapping
from ..utils.config_base import option as _f


@dataclass
class ModelConfig(ConfigBase):
    """Which backbone to load."""

    SECTION = "model"
    name: str = _f("minilm", "built-in alias (minilm, smollm2-135m), local folder or hub id")
    trust_remote_code: bool = _f(
        False, "allow code from the model folder to run (off: never needed for supported models)"
    )
    dtype: str | None = _f(
        None, "torch dtype to load in (float32 default; bfloat16 on a GPU)", choices=("float32", "bfloat16", "float16")
    )


@dataclass
class DataConfig(ConfigBase):
    """Where the examples come from and how they are written out for the model."""

    SECTION = "data"
    task: str | None = _f(
        None,
        "a registered benchmark (sst2, rte, boolq, copa, record, alpaca, rotten_tomatoes, md-agreement, "
        "convabuse, armis, popquorn, davidson ...) read "
        "from data.path in its original file format; replaces train/validation/test",
    )
    path: str | None = _f(None, "folder holding the task's files (see `prefalign tasks`)")
    shift: ShiftConfig | None = _f(
        None,
        "a preference shift applied after loading: {name: sst2-p, <its parameters>} (see `prefalign shift --list`)",
    )
    shift_splits: list[str] = field(
        default_factory=lambda: ["train", "validation"],
        metadata={
            "help": "splits the shift rewrites; the test split stays as annotated, so scores measure the task, "
            "not the shifted preference"
        },
    )
    train: str | None = _f(
        None, "training file (CSV, TSV, JSONL, JSON or a saved datasets folder) or builtin:rotten_tomatoes"
    )
    validation: str | None = _f(None, "validation file; default: a held-out slice of train (validation_fraction)")
    test: str | None = _f(None, "test file for `prefalign eval` after training")
    text_column: str = _f("text", "column with the input text")
    text_pair_column: str | None = _f(None, "column with the second text of a pair task (RTE hypothesis)")
    label_column: str = _f("label", "column with the hard label (index or name)")
    soft_label_column: str | None = _f(None, "column with a distribution over classes (or P(class 1) for two classes)")
    choice_columns: list[str] | None = _f(None, "columns with the options of a multiple-choice task (COPA)")
    label_names: list[str] | None = _f(None, "class names in index order; inferred from the data if omitted")
    template: str | None = _f(None, "prompt with {text} and {text_pair}; decoders read the label word after it")
    verbalizers: list[str] | None = _f(None, "label words, one per class (decoders); default ' ' + label name")
    max_length: int = _f(128, "tokens per input (prompt included)")
    validation_fraction: float = _f(0.1, "share of train held out for validation when no validation file is given")
    max_train_examples: int | None = _f(
        None, "use at most this many training examples (data.target annotators: every row of this many items)"
    )
    max_eval_examples: int | None = _f(None, "use at most this many validation/test examples")
    max_validation_examples: int | None = _f(
        None, "cap the validation split alone (evaluated every eval_steps); overrides max_eval_examples for it"
    )
    target: str | None = _f(
        None,
        "multi-annotator data: what train examples are labelled with: majority, soft (the "
        "annotators' label distribution) or a crowd-kit aggregate (dawid-skene, glad, mace, "
        "one-coin-dawid-skene; add -soft for its posterior), or annotators (every item, annotator, label "
        "row, the annotator as conditioning input: see method.annotator_conditioning); default majority",
    )
    annotations: AnnotationConfig | None = _f(
        None,
        "multi-annotator options: {format: long|lists|counts, item_column, "
        "annotator_column, count_columns, rating_bins, group_columns, "
        "min_group_annotators, weights: crowdlab} (see docs/annotations.md)",
    )

    def validate(self) -> None:
        self.check_range("max_length", 8, 1_000_000)
        self.check_range("validation_fraction", 0.0, 0.9)
        self.check_range("max_train_examples", 1, None)
        self.check_range("max_eval_examples", 1, None)
        self.check_range("max_validation_examples", 1, None)
        bad = sorted(set(self.shift_splits) - {"train", "validation", "test"})
        if bad:
            raise ConfigError(f"data.shift_splits may hold train, validation and test, not {', '.join(bad)}")
        self._task = get_task(self.task) if self.task else None
        self._validate_annotations()

    @property
    def task_definition(self) -> TaskDefinition | None:
        """The registered task ``data.task`` names (looked up once, when the config was built)."""
        return self._task

    @property
    def own_annotation_files(self) -> bool:
        """data.train/validation/test are your own multi-annotator files (data.annotations.format is set)."""
        return not self.task and self.annotations is not None and self.annotations.format is not None

    def input_columns(self) -> dict[str, Any]:
        """The columns that hold a model's inputs, as the file readers take them (``read_inputs(path, **...)``)."""
        return {
            "text_column": self.text_column,
            "text_pair_column": self.text_pair_column,
            "choice_columns": self.choice_columns,
        }

    def columns(self) -> dict[str, Any]:
        """Input and label columns, as the file readers take them (``read_table(path, **data.columns())``)."""
        return {**self.input_columns(), "label_column": self.label_column, "soft_label_column": self.soft_label_column}

    def prompt(self, decoder: bool = False) -> PromptFormat:
        """The prompt: data.template and data.verbalizers; a registered task supplies a decoder's defaults."""
        template, verbalizers = self.template, self.verbalizers
        if self._task is not None and decoder:
            template = template or self._task.decoder_template
            verbalizers = verbalizers or self._task.verbalizers
        return PromptFormat(template=template, verbalizers=verbalizers)

    @property
    def generation_metric(self) -> str:
        """How a generation task is scored: its registered metric (data.task), else SQuAD-style f1-em."""
        return self._task.metric if self._task is not None else "f1-em"

    def _validate_annotations(self) -> None:
        """data.target and data.annotations apply to multi-annotator tasks and files only."""
        if self.target is None and self.annotations is None:
            return
        if self.target is not None and self.target not in TARGETS:
            raise ConfigError(f"data.target: {self.target!r} is not one of {', '.join(TARGETS)}")
        fmt = self.annotations.format if self.annotations is not None else None
        if self._task is not None:
            if not self._task.extra.get("annotated"):
                raise ConfigError(
                    f"data.target and data.annotations need multi-annotator data; task '{self.task}' "
                    "has one label per example (try md-agreement, convabuse, armis, popquorn, davidson)"
                )
            if fmt is not None:
                raise ConfigError(f"data.annotations.format is for your own files; task '{self.task}' reads its own")
        elif fmt is None:
            raise ConfigError(
                "data.target and data.annotations on your own files need data.annotations.format: long, lists or counts"
            )


# Validation scores that can pick the kept checkpoint: name -> (smaller is better, the data that gives it:
# "any" classification task, a "single-label" one, "annotations" (multi-annotator) or annotator "groups").
CHECKPOINT_METRICS = {
    "accuracy": (False, "any"),
    "loss": (True, "any"),
    "f1_weighted": (False, "single-label"),
    "f1": (False, "annotations"),
    "soft_ce": (True, "annotations"),
    "lewidi_ce": (True, "annotations"),
    "micro_f1": (False, "annotations"),
    "jsd": (True, "annotations"),
    "ece": (True, "annotations"),
    "worst_group_ce": (True, "groups"),
}
LOWER_IS_BETTER = tuple(name for name, (lower, _) in CHECKPOINT_METRICS.items() if lower)

# transformers' learning-rate schedules that need nothing beyond the warm-up and the step count.
SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)

# TrainingArguments fields prefalign sets from its own keys (or needs as they are): training.trainer_args
# may not hold them. Field -> what sets it.
MANAGED_TRAINER_ARGS = {
    "output_dir": "training.output_dir",
    "learning_rate": "training.learning_rate",
    "weight_decay": "training.weight_decay",
    "per_device_train_batch_size": "training.batch_size",
    "per_device_eval_batch_size": "training.eval_batch_size",
    "num_train_epochs": "training.epochs",
    "max_steps": "training.max_steps",
    "lr_scheduler_type": "training.lr_scheduler",
    "warmup_steps": "training.warmup_ratio",
    "warmup_ratio": "training.warmup_ratio",
    "eval_strategy": "training.eval_steps",
    "eval_steps": "training.eval_steps",
    "save_strategy": "training.eval_steps (a checkpoint per evaluation)",
    "save_steps": "training.eval_steps (a checkpoint per evaluation)",
    "save_total_limit": "training.save_total_limit",
    "load_best_model_at_end": "prefalign (the best checkpoint is always kept)",
    "metric_for_best_model": "training.best_metric",
    "greater_is_better": "training.best_metric",
    "prediction_loss_only": "prefalign (from the task)",
    "logging_steps": "training.logging_steps",
    "seed": "training.seed",
    "data_seed": "training.seed",
    "use_cpu": "training.device",
    "bf16": "training.bf16",
    "fp16": "training.fp16",
    "report_to": "training.report_to",
    "remove_unused_columns": "prefalign (the collator needs every column)",
    "label_names": "prefalign (from the task)",
    "disable_tqdm": "training.progress",
    "include_num_input_tokens_seen": "prefalign (tokens_per_second)",
    "dataloader_num_workers": "prefalign (batches are built in-process, which exact resumption relies on)",
    "gradient_accumulation_steps": "training.gradient_accumulation_steps",
    "gradient_checkpointing": "training.gradient_checkpointing",
    "activation_checkpointing": "training.gradient_checkpointing",
    "resume_from_checkpoint": "`prefalign train --resume`",
}


def trainer_arg_fields() -> frozenset[str]:
    """The fields transformers' ``TrainingArguments`` takes (imported only when training.trainer_args is set,
    so a config without it is validated without transformers)."""
    from transformers.training_args import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments) if f.init)


@dataclass
class TrainingConfig(ConfigBase):
    """Optimisation and evaluation schedule (defaults: DCPC section 4.1)."""

    SECTION = "training"
    output_dir: str = _f("runs/prefalign", "where checkpoints, logs and the final adapter go")
    learning_rate: float = _f(1e-4, "AdamW learning rate (section 4.1: 1e-4)")
    head_learning_rate: float | None = _f(
        None, "learning rate of an encoder's classification head (default: learning_rate)"
    )
    weight_decay: float = _f(0.0, "AdamW weight decay")
    batch_size: int = _f(16, "examples per step (section 4.1: 16 for SST-2 and RTE)")
    eval_batch_size: int = _f(64, "examples per evaluation batch")
    epochs: float = _f(10.0, "training epochs (section 4.1: up to 10)")
    max_steps: int = _f(-1, "stop after this many steps (overrides epochs when > 0)")
    warmup_ratio: float = _f(0.06, "linear warm-up share of the steps (section 4.1: 6%)")
    eval_steps: int = _f(200, "evaluate every this many steps (section 4.1: 200)")
    early_stopping_patience: int = _f(10, "stop after this many evaluations without improvement (section 4.1: 10)")
    best_metric: str = _f(
        "accuracy",
        "validation score that picks the checkpoint kept at the end and drives early "
        "stopping: accuracy, f1_weighted, loss, or on multi-annotator tasks f1 (macro), soft_ce, jsd, "
        "ece, worst_group_ce (lower is better for loss and the last four); generation tasks use loss",
        choices=tuple(CHECKPOINT_METRICS),
    )
    logging_steps: int = _f(10, "log loss terms and gate rates every this many steps")
    save_total_limit: int = _f(2, "checkpoints kept on disk (the best one is always kept)")
    seed: int = _f(42, "seed for initialisation, data order and sampling")
    device: str = _f("auto", "'auto' (GPU when present), 'cpu' or 'cuda'", choices=("auto", "cpu", "cuda"))
    bf16: bool = _f(False, "bfloat16 mixed precision (GPUs from Ampere on, and CPUs)")
    fp16: bool = _f(False, "float16 mixed precision with loss scaling (GPU)")
    gradient_accumulation_steps: int = _f(
        1, "add up the gradients of this many batches per optimizer step (effective batch: batch_size x this)"
    )
    gradient_checkpointing: bool = _f(
        False,
        "recompute the backbone's activations in the backward pass: less memory, about a third more time (prefix "
        "methods: prefalign checkpoints each layer with the prefix cache kept)",
    )
    lr_scheduler: str = _f(
        "linear", "learning-rate schedule after the warm-up (transformers' names)", choices=SCHEDULERS
    )
    report_to: list[str] = field(
        default_factory=list,
        metadata={
            "help": "experiment trackers that receive the logs: tensorboard, wandb, mlflow, ... (transformers' "
            "integrations; each needs its package); empty: none"
        },
    )
    trainer_args: dict = field(
        default_factory=dict,
        metadata={
            "help": "any other transformers TrainingArguments field, passed through, e.g. {max_grad_norm: 0.5, "
            "optim: adafactor, torch_compile: true}; fields prefalign sets from its own keys are refused"
        },
    )
    progress: bool = _f(
        True,
        "show a progress bar with the loss and validation scores (a plain line per log when "
        "standard output is not a terminal)",
    )
    judge: str = _f(
        "offline",
        "who gives gpt-score on instruction data (Alpaca): 'chat', the paper's judge prompt on "
        "an OpenAI-compatible endpoint (PREFALIGN_API_BASE / _MODEL / _KEY), or 'offline', a token-overlap "
        "stand-in that is labelled as such",
        choices=("offline", "chat"),
    )
    num_beams: int = _f(3, "beam width when generating answers of generation tasks (section 4.1: 3)")
    perplexity_text: str | None = _f(
        None,
        "a plain-text file (e.g. WikiText-2's wiki.test.raw): after training, the "
        "trained model's perplexity on it is reported (bias-aware PEFT Table 5; decoders)",
    )
    perplexity_tokens: int = _f(4096, "score the first this many tokens of perplexity_text")
    perplexity_window: int = _f(512, "tokens per scored window (non-overlapping)")

    def validate(self) -> None:
        self.check_range("learning_rate", 0.0, 10.0)
        self.check_range("head_learning_rate", 0.0, 10.0)
        self.check_range("weight_decay", 0.0, None)
        self.check_range("batch_size", 1, None)
        self.check_range("eval_batch_size", 1, None)
        self.check_range("warmup_ratio", 0.0, 1.0)
        self.check_range("eval_steps", 1, None)
        self.check_range("early_stopping_patience", 1, None)
        self.check_range("logging_steps", 1, None)
        self.check_range("save_total_limit", 1, None)
        self.check_range("num_beams", 1, 64)
        self.check_range("perplexity_tokens", 2, None)
        self.check_range("perplexity_window", 2, None)
        self.check_range("gradient_accumulation_steps", 1, None)
        if self.bf16 and self.fp16:
            raise ConfigError("training.bf16 and training.fp16 are both on; choose one mixed precision")
        for key in self.trainer_args:  # prefalign's own keys first: those need no transformers import
            if key in MANAGED_TRAINER_ARGS:
                raise ConfigError(
                    f"training.trainer_args.{key} is set by {MANAGED_TRAINER_ARGS[key]}; set that instead"
                )
        fields = trainer_arg_fields() if self.trainer_args else frozenset()
        for key in self.trainer_args:
            if key not in fields:
                close = difflib.get_close_matches(str(key), sorted(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"training.trainer_args.{key} is not a transformers TrainingArguments field{hint}")


@dataclass
class ExperimentConfig(ConfigBase):
    """A whole run: ``method`` is resolved from ``{name: ..., <method options>}`` to its method's config."""

    SECTION = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=lambda: resolve_method("dcpc"))
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self) -> None:
        self.method = resolve_method(self.method)  # a mapping, a bare name or a config: its method's dataclass
        super().__post_init__()

    @property
    def method_name(self) -> str:
        return self.method.name


def load_config(
    path: str | None = None, overrides: list[str] | None = None, base: dict | None = None
) -> ExperimentConfig:
    """Read a YAML config (optional), apply ``--set`` overrides, validate everything."""
    data: dict[str, Any] = deep_merge({"method": {"name": "dcpc"}}, base or {})
    if path:
        loaded = read_yaml_mapping(path, "config file", "model/data/method/training sections")
        data = deep_merge(data, _method_as_mapping(loaded))
    data = deep_merge(data, _method_as_mapping(parse_overrides(overrides or [])))
    return ExperimentConfig.from_dict(data)


def _method_as_mapping(section: dict) -> dict:
    """``method: dcpc`` is short for ``method: {name: dcpc}``."""
    if isinstance(section.get("method"), str):
        return {**section, "method": {"name": section["method"]}}
    return section


def dump_config(config: ExperimentConfig) -> str:
    """YAML text of a resolved config."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


# -- the config described: `prefalign config show` and `prefalign config schema` -------------------------
def _yaml_value(value: Any) -> str:
    """``value`` as one line of YAML (flow style for lists and mappings)."""
    if isinstance(value, ConfigBase):
        value = value.to_dict()
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _choices(f: dataclasses.Field) -> str:
    choices = f.metadata.get("choices")
    return f" [{' | '.join(map(str, choices))}]" if choices else ""


def describe_config(config: ExperimentConfig) -> str:
    """The resolved config as YAML, every key with its value (defaults included) and its help as a comment.

    ``yaml.safe_load`` of the text gives ``config.to_dict()`` back, so it can be saved and edited as a config.
    """
    lines = []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        lines.append(f"{section.name}:  # {(type(value).__doc__ or '').strip().splitlines()[0]}")
        for f in dataclasses.fields(value):
            help_text = f.metadata.get("help", "").replace("\n", " ")
            lines.append(f"  {f.name}: {_yaml_value(getattr(value, f.name))}  # {help_text}{_choices(f)}")
    return "\n".join(lines) + "\n"


def _type_schema(tp: Any) -> dict:
    """JSON schema of a config field's annotated type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        options = [_type_schema(a) for a in args if a is not type(None)]
        if type(None) in args:
            options.append({"type": "null"})
        return options[0] if len(options) == 1 else {"anyOf": options}
    if origin in (list, tuple):
        return {"type": "array", "items": _type_schema(args[0]) if args else {}}
    if origin is dict or tp is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(tp):
        return section_schema(tp)
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return {"type": simple[tp]} if tp in simple else {}


def section_schema(cls: type, defaults: Any = None) -> dict:
    """JSON schema of one config dataclass: a property per field with its type, default, help and choices."""
    hints = typing.get_type_hints(cls)
    defaults = defaults if defaults is not None else _default_instance(cls)
    props = {}
    for f in dataclasses.fields(cls):
        prop = {**_type_schema(hints[f.name]), "description": f.metadata.get("help", "")}
        if defaults is not None:
            value = getattr(defaults, f.name)
            prop["default"] = value.to_dict() if isinstance(value, ConfigBase) else value
        if f.metadata.get("choices"):
            prop["enum"] = list(f.metadata["choices"])
        props[f.name] = prop
    return {
        "type": "object",
        "description": (cls.__doc__ or "").strip().splitlines()[0],
        "properties": props,
        "additionalProperties": False,
    }


def _default_instance(cls: type):
    try:
        return cls()
    except (ConfigError, TypeError):  # a section without a valid default of its own (a shift needs its name)
        return None


def config_schema() -> dict:
    """JSON schema (draft 2020-12) of an experiment config; the method section is one schema per registered
    method, told apart by ``name``."""
    methods = []
    for name in SPECS:
        config = method_config(name)
        schema = section_schema(type(config), config)
        schema["properties"]["name"] = {**schema["properties"]["name"], "const": name}
        schema["required"] = ["name"]
        schema["title"] = name
        methods.append(schema)
    defaults = ExperimentConfig()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "prefalign experiment config",
        "type": "object",
        "properties": {
            "model": section_schema(ModelConfig, defaults.model),
            "data": section_schema(DataConfig, defaults.data),
            "method": {"description": "the method and its options (`prefalign methods NAME`)", "oneOf": methods},
            "training": section_schema(TrainingConfig, defaults.training),
        },
        "additionalProperties": False,
    }
