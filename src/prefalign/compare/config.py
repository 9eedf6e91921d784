"""The `prefalign compare` config: methods x datasets (x their shifted twins) x models x seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..methods import method_class
from ..tasks import get_task
from ..utils.config_base import ConfigBase, deep_merge, parse_overrides, read_yaml_mapping
from ..utils.config_base import option as _f


@dataclass
class MethodEntry(ConfigBase):
    """One row of the table: a registered method, its options and its own training overrides."""

    SECTION = "methods[]"
    name: str = _f("dcpc", "registered method (dcpc, ptuning-v2, lora, full-ft, ... see `prefalign methods`)")
    label: str | None = _f(None, "row name in the table (default: name)")
    method: dict | None = _f(None, "method options, as the method section of a train config")
    training: dict | None = _f(None, "training overrides for this method (for example its learning rate)")
    data: dict | None = _f(
        None,
        "data overrides for this row, e.g. {target: soft} to train on the annotators' "
        "label distribution (multi-annotator tasks)",
    )
    seeds: list[int] | None = _f(
        None,
        "seeds of this row (default: the grid's); [0] for a method whose result no "
        "seed changes (the untuned model, CC)",
    )

    def validate(self) -> None:
        if self.seeds is not None and not self.seeds:
            raise ConfigError(f"methods[{self.label or self.name}].seeds is empty; list a seed or leave it out")
        self.method = self.method or {}
        self.training = self.training or {}
        self.data = self.data or {}
        self.label = self.label or self.name


@dataclass
class DatasetEntry(ConfigBase):
    """One dataset column pair: the data section, and the shift that makes its twin."""

    SECTION = "datasets[]"
    name: str = _f("sst2", "column name in the table")
    data: dict | None = _f(None, "the data section (task/path or files, template, limits)")
    shifted: dict | None = _f(None, "shift for the twin column, e.g. {name: sst2-p, fraction: 0.5}; null: none")
    shifted_name: str | None = _f(None, "twin column name (default: the shift's name upper-cased, e.g. SST2-P)")
    metric: str | None = _f(
        None,
        "the test metric in the table (a run's test metric key without 'test_': "
        "accuracy, f1_em, gpt_score); default: the registered task's metric, else accuracy",
    )
    also: list[str] = field(
        default_factory=list,
        metadata={
            "help": "further metrics shown in their own columns beside the main one (a run's metric key, looked up as "
            "test_<key> then <key>): e.g. [accuracy, perplexity]; perplexity needs training.perplexity_text"
        },
    )

    def validate(self) -> None:
        self.data = self.data or {}
        if self.metric is None:
            task = self.data.get("task")
            if task:
                self.metric = get_task(task).metric.replace("-", "_")
            else:
                self.metric = "accuracy"
        if self.shifted is not None and not self.shifted.get("name"):
            raise ConfigError(f"datasets[{self.name}].shifted needs a name, for example {{name: sst2-p}}")
        if self.shifted is not None and not self.shifted_name:
            self.shifted_name = str(self.shifted["name"]).upper()


@dataclass
class ModelEntry(ConfigBase):
    """A backbone (Table 4 compares several)."""

    SECTION = "models[]"
    name: str = _f("minilm", "built-in alias, local folder or hub id")
    label: str | None = _f(None, "name in the table (default: name)")
    training: dict | None = _f(None, "training overrides for this backbone")

    def validate(self) -> None:
        self.training = self.training or {}
        self.label = self.label or Path(self.name).name


@dataclass
class CompareConfig(ConfigBase):
    """A whole comparison grid; every run is a `prefalign train` run of the base config plus its entries."""

    SECTION = ""
    output_dir: str = _f("runs/compare", "where runs, results.csv/json, table.md and chart.png go")
    title: str = _f("Comparison", "heading of the Markdown table")
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "seeds; the table shows medians"})
    models: list[ModelEntry] = field(default_factory=lambda: [ModelEntry()], metadata={"help": "backbones"})
    methods: list[MethodEntry] = field(default_factory=list, metadata={"help": "table rows"})
    datasets: list[DatasetEntry] = field(default_factory=list, metadata={"help": "table columns"})
    base: dict | None = _f(None, "model/data/method/training sections every run starts from")
    keep: str = _f(
        "adapter",
        "what each finished run keeps: 'all' (checkpoints too), 'adapter' or 'metrics'",
        choices=("all", "adapter", "metrics"),
    )
    pairs: list[str] | None = _f(
        None,
        "two row-label targets [a, b], e.g. [majority, soft]: table.md also counts, per "
        "dataset and metric, the seed-matched (method, seed) pairs in which the row "
        "'<method> / b' beats '<method> / a' (prefalign.compare.pairs)",
    )
    differences: list[list[str]] | None = _f(
        None,
        "pairs of row labels [a, b], e.g. [[KL, PTLoss]]: table.md also gives, per dataset column, the median "
        "seed-matched difference b minus a in the column's metric with its bootstrap 95% interval "
        "(prefalign.compare.pairs.method_differences_table)",
    )

    def validate(self) -> None:
        self.base = self.base or {}
        if "method" in self.base:
            raise ConfigError(
                "compare: base must not hold a method section; put each method's options under methods[].method"
            )
        unknown = sorted(set(self.base) - {"model", "data", "training"})
        if unknown:
            raise ConfigError(f"compare: base may hold model, data and training sections, not {', '.join(unknown)}")
        if not self.methods:
            raise ConfigError("compare: list at least one entry under methods")
        if not self.datasets:
            raise ConfigError("compare: list at least one entry under datasets")
        if not self.seeds:
            raise ConfigError("compare: list at least one seed")
        if self.pairs is not None and (len(self.pairs) != 2 or len(set(self.pairs)) != 2):
            raise ConfigError(
                f"compare: pairs names two different targets [a, b], e.g. [majority, soft]; got {self.pairs}"
            )
        labels = [m.label for m in self.methods]
        for pair in self.differences or []:
            if not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]:
                raise ConfigError(f"compare: each entry of differences names two different rows [a, b]; got {pair}")
            missing = [p for p in pair if p not in labels]
            if missing:
                raise ConfigError(
                    f"compare: differences names row '{missing[0]}', which is not a method label ({', '.join(labels)})"
                )
        for kind, entries in (
            ("method", labels),
            ("dataset", [d.name for d in self.datasets]),
            ("model", [m.label for m in self.models]),
        ):
            dupes = sorted({e for e in entries if entries.count(e) > 1})
            if dupes:
                raise ConfigError(f"compare: {kind} names must be unique; repeated: {', '.join(dupes)}")


def load_compare_config(path: str, overrides: list[str] | None = None) -> CompareConfig:
    """Read a compare YAML; ``--set`` overrides address it too (``--set base.training.max_steps=5``)."""
    data = read_yaml_mapping(path, "compare config", "methods, datasets and base")
    data = deep_merge(data, parse_overrides(overrides or []))
    for key, entry in (("methods", MethodEntry), ("datasets", DatasetEntry), ("models", ModelEntry)):
        if key in data:
            if not isinstance(data[key], list):
                raise ConfigError(f"compare: {key} must be a list")
            data[key] = [
                entry.from_dict({"name": item} if isinstance(item, str) else item, where=f"{key}[{i}]")
                for i, item in enumerate(data[key])
            ]
    return CompareConfig.from_dict(data)


def refusal(method: MethodEntry, dataset: DatasetEntry) -> str | None:
    """Why ``method`` cannot train ``dataset``'s task (a method that only classifies, on a generation task), or
    None. Such a cell is not run; the table shows it as n/a with the reason."""
    task = dataset.data.get("task") if dataset.data else None
    if not task or get_task(task).kind != "generation":
        return None
    return method_class(method.name).generation_refusal
