"""The experiment config: model, data, method and training sections, from YAML plus --set overrides."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .configuration import ConfigBase
from .configuration import option as _f
from .errors import ConfigError




@dataclass
class ModelConfig(ConfigBase):
    """Which backbone to load."""

    SECTION = "model"
    name: str = _f("minilm", "built-in alias (minilm, smollm2-135m), local folder or hub id")
    trust_remote_code: bool = _f(False, "allow code from the model folder to run (off: never needed for supported models)")
    dtype: str | None = _f(None, "torch dtype to load in (float32 default; bfloat16 on a GPU)",
                           choices=("float32", "bfloat16", "float16"))


@dataclass
class DataConfig(ConfigBase):
    """Where the examples come from and how they are written out for the model."""

    SECTION = "data"
    task: str | None = _f(None, "a registered benchmark (sst2, rte, boolq, copa, record, alpaca, rotten_tomatoes, md-agreement, "
                          "convabuse, armis, popquorn, davidson ...) read "
                          "from data.path in its original file format; replaces train/validation/test")
    path: str | None = _f(None, "folder holding the task's files (see `prefalign tasks`)")
    shift: dict | None = _f(None, "a preference shift applied after loading: {name: sst2-p, <its parameters>} "
                            "(see `prefalign shift --list`)")
    shift_splits: list[str] = field(default_factory=lambda: ["train", "validation"], metadata={
        "help": "splits the shift rewrites; the test split stays as annotated, so scores measure the task, "
                "not the shifted preference"})
    train: str | None = _f(None, "training file (CSV, TSV, JSONL, JSON or a saved datasets folder) or builtin:rotten_tomatoes")
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
    max_train_examples: int | None = _f(None, "use at most this many training examples")
    max_eval_examples: int | None = _f(None, "use at most this many validation/test examples")
    max_validation_examples: int | None = _f(None, "cap the validation split alone (evaluated every eval_steps); "
                                             "overrides max_eval_examples for it")
    target: str | None = _f(None, "multi-annotator data: what train examples are labelled with: majority, soft (the "
                            "annotators' label distribution) or a crowd-kit aggregate (dawid-skene, glad, mace, "
                            "one-coin-dawid-skene; add -soft for its posterior); default majority")
    annotations: dict | None = _f(None, "multi-annotator options: {format: long|lists|counts, item_column, "
                                  "annotator_column, count_columns, rating_bins, group_columns, "
                                  "min_group_annotators, weights: crowdlab} (see docs/annotations.md)")

    def validate(self) -> None:
        self.check_range("max_length", 8, 1_000_000)
        self.check_range("validation_fraction", 0.0, 0.9)
        self.check_range("max_train_examples", 1, None)
        self.check_range("max_eval_examples", 1, None)
        self.check_range("max_validation_examples", 1, None)
        bad = sorted(set(self.shift_splits) - {"train", "validation", "test"})
        if bad:
            raise ConfigError(f"data.shift_splits may hold train, validation and test, not {', '.join(bad)}")
        if self.shift is not None and not self.shift.get("name"):
            raise ConfigError("data.shift needs a name, for example {name: sst2-p}")
        if self.task:
            from .tasks import get_task

            get_task(self.task)
        self._validate_annotations()

    def _validate_annotations(self) -> None:
        """data.target and data.annotations apply to multi-annotator tasks and files only."""
        if self.target is None and self.annotations is None:
            return
        from .annotations.config import AnnotationConfig
        from .annotations.targets import TARGETS

        if self.target is not None and self.target not in TARGETS:
            raise ConfigError(f"data.target: {self.target!r} is not one of {', '.join(TARGETS)}")
        options = AnnotationConfig.from_dict(self.annotations or {})
        if self.task:
            from .tasks import get_task

            if not get_task(self.task).extra.get("annotated"):
                raise ConfigError(f"data.target and data.annotations need multi-annotator data; task '{self.task}' "
                                  "has one label per example (try md-agreement, convabuse, armis, popquorn, davidson)")
            if options.format is not None:
                raise ConfigError(f"data.annotations.format is for your own files; task '{self.task}' reads its own")
        elif options.format is None:
            raise ConfigError("data.target and data.annotations on your own files need data.annotations.format: long, "
                              "lists or counts")


# Validation scores where a smaller value is better (the rest: larger is better).
LOWER_IS_BETTER = ("loss", "soft_ce", "jsd", "ece", "worst_group_ce")


@dataclass
class TrainingConfig(ConfigBase):
    """Optimisation and evaluation schedule (defaults: DCPC section 4.1)."""

    SECTION = "training"
    output_dir: str = _f("runs/prefalign", "where checkpoints, logs and the final adapter go")
    learning_rate: float = _f(1e-4, "AdamW learning rate (section 4.1: 1e-4)")
    head_learning_rate: float | None = _f(None, "learning rate of an encoder's classification head (default: learning_rate)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    batch_size: int = _f(16, "examples per step (section 4.1: 16 for SST-2 and RTE)")
    eval_batch_size: int = _f(64, "examples per evaluation batch")
    epochs: float = _f(10.0, "training epochs (section 4.1: up to 10)")
    max_steps: int = _f(-1, "stop after this many steps (overrides epochs when > 0)")
    warmup_ratio: float = _f(0.06, "linear warm-up share of the steps (section 4.1: 6%)")
    eval_steps: int = _f(200, "evaluate every this many steps (section 4.1: 200)")
    early_stopping_patience: int = _f(10, "stop after this many evaluations without improvement (section 4.1: 10)")
    best_metric: str = _f("accuracy", "validation score that picks the checkpoint kept at the end and drives early "
                          "stopping: accuracy, f1_weighted, loss, or on multi-annotator tasks f1 (macro), soft_ce, jsd, "
                          "ece, worst_group_ce (lower is better for loss and the last four); generation tasks use loss",
                          choices=LOWER_IS_BETTER + ("accuracy", "f1", "f1_weighted"))
    logging_steps: int = _f(10, "log loss terms and gate rates every this many steps")
    save_total_limit: int = _f(2, "checkpoints kept on disk (the best one is always kept)")
    seed: int = _f(42, "seed for initialisation, data order and sampling")
    device: str = _f("auto", "'auto' (GPU when present), 'cpu' or 'cuda'", choices=("auto", "cpu", "cuda"))
    bf16: bool = _f(False, "bfloat16 mixed precision (GPU)")
    progress: bool = _f(True, "show progress bars")
    judge: str = _f("offline", "who gives gpt-score on instruction data (Alpaca): 'chat', the paper's judge prompt on "
                    "an OpenAI-compatible endpoint (PREFALIGN_API_BASE / _MODEL / _KEY), or 'offline', a token-overlap "
                    "stand-in that is labelled as such", choices=("offline", "chat"))
    num_beams: int = _f(3, "beam width when generating answers of generation tasks (section 4.1: 3)")
    perplexity_text: str | None = _f(None, "a plain-text file (e.g. WikiText-2's wiki.test.raw): after training, the "
                                     "trained model's perplexity on it is reported (bias-aware PEFT Table 5; decoders)")
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


@dataclass
class ExperimentConfig(ConfigBase):
    """A whole run: ``method`` is ``{name: ..., <method options>}``."""

    SECTION = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: dict = field(default_factory=lambda: {"name": "dcpc"})
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def validate(self) -> None:
        from .methods import method_config

        params = dict(self.method)
        name = params.pop("name", None)
        if not name:
            raise ConfigError("method.name is required (for example dcpc or ptuning-v2)")
        if not isinstance(name, str):
            raise ConfigError(f"method.name must be a method's name (for example dcpc), not {name!r}")
        resolved = method_config(name, params)
        # Keep only what the user set, but typed as the method's config types them.
        self.method = {"name": name, **{k: getattr(resolved, k) for k in params}}

    @property
    def method_name(self) -> str:
        return self.method["name"]

    @property
    def method_params(self) -> dict:
        return {k: v for k, v in self.method.items() if k != "name"}


def parse_overrides(pairs: list[str]) -> dict:
    """``["training.learning_rate=1e-3", ...]`` -> nested dict with YAML-typed values."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got '{pair}'")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set key '{key}' is malformed")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set key '{key}' conflicts with another override")
        node[parts[-1]] = value
    return out


def deep_merge(base: dict, update: dict) -> dict:
    """Recursively merge ``update`` into a copy of ``base``."""
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def read_yaml_mapping(path: str, kind: str, holds: str) -> dict:
    """The mapping in YAML file ``path``; a ConfigError names a missing file, a YAML error's line,
    or a file that is not a mapping (``kind`` names the file, ``holds`` what it should hold)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{kind} not found: {path}")
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path} is not valid YAML{where}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a mapping with {holds}")
    return loaded


def load_config(path: str | None = None, overrides: list[str] | None = None, base: dict | None = None) -> ExperimentConfig:
    """Read a YAML config (optional), apply ``--set`` overrides, validate everything."""
    data: dict[str, Any] = deep_merge({"method": {"name": "dcpc"}}, base or {})
    if path:
        loaded = read_yaml_mapping(path, "config file", "model/data/method/training sections")
        if isinstance(loaded.get("method"), str):
            loaded["method"] = {"name": loaded["method"]}
        data = deep_merge(data, loaded)
    data = deep_merge(data, parse_overrides(overrides or []))
    if isinstance(data.get("method"), str):
        data["method"] = {"name": data["method"]}
    return ExperimentConfig.from_dict(data)


def dump_config(config: ExperimentConfig) -> str:
    """YAML text of a resolved config."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
