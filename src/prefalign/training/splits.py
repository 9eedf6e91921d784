"""The train, validation and test splits a data section names: files, a registered task or your own
multi-annotator files, capped, held out and preference-shifted as the config says."""

from __future__ import annotations

import random

import torch

from ..annotations.own_files import load_annotated_files
from ..data import Example, TaskDataset, load_rotten_tomatoes, read_table
from ..errors import DataError
from ..tasks import load_task
from .config import DataConfig

BUILTIN_RT = "builtin:rotten_tomatoes"

Splits = tuple[TaskDataset, TaskDataset, TaskDataset | None]  # train, validation, test


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
    return read_table(path, **cfg.columns(), label_names=label_names, name=name, limit=limit)


def subset(data: TaskDataset, indices, name: str) -> TaskDataset:
    """The examples at ``indices``, as a dataset called ``name``."""
    return TaskDataset([data[i] for i in indices], list(data.label_names), name=name)


def first(data: TaskDataset, n: int | None) -> TaskDataset:
    """The first ``n`` examples (all of them when ``n`` is None); for annotation rows (data.target:
    annotators), every row of the first ``n`` items, so each target trains on the same items."""
    if not n:
        return data
    if data.examples and data.examples[0].meta.get("annotator_row"):
        kept = list(dict.fromkeys(ex.meta["item"] for ex in data.examples))[:n]
        keep = set(kept)
        return subset(data, [i for i, ex in enumerate(data.examples) if ex.meta["item"] in keep], data.name)
    return subset(data, range(min(n, len(data))), data.name)


def load_splits(cfg: DataConfig, seed: int) -> Splits:
    """(train, validation, test) from the data section; validation is carved from train if not given.

    With ``data.task`` the splits come from the task registry; with ``data.shift`` the named
    preference shift rewrites the splits in ``data.shift_splits`` (seeded by ``seed``).
    """
    train, validation, test = _raw_splits(cfg, seed)
    validation = first(validation, cfg.max_validation_examples)
    train = first(train, cfg.max_train_examples)
    test = first(test, cfg.max_eval_examples) if test is not None else None
    if cfg.shift is None:
        return train, validation, test
    shifted = {}
    for split, data in (("train", train), ("validation", validation), ("test", test)):
        if data is not None and split in cfg.shift_splits:
            data, _ = cfg.shift.apply(data, seed)
        shifted[split] = data
    train, validation, test = shifted["train"], shifted["validation"], shifted["test"]
    if train.is_generation:  # BoolQ-PS: styled answers to train on, the same task's labels to score
        validation, test = (
            as_generation(d) if d is not None and not d.is_generation else d for d in (validation, test)
        )
    return train, validation, test


def as_generation(data: TaskDataset) -> TaskDataset:
    """A classification split as a generation one: the label name is the answer, meta keeps the label."""
    examples = []
    for ex in data.examples:
        name = data.label_names[ex.hard_label()]
        examples.append(
            Example(
                text=ex.text, text_pair=ex.text_pair, answer=name, references=[name], meta={**ex.meta, "label": name}
            )
        )
    return TaskDataset(examples, [], name=data.name)


def _raw_splits(cfg: DataConfig, seed: int) -> Splits:
    validation = test = None
    if cfg.own_annotation_files:
        return load_annotated_files(cfg, seed)
    if cfg.task:
        annotation = {
            "target": cfg.target,
            "annotations": cfg.annotations,
            "validation_fraction": cfg.validation_fraction,
        }  # multi-annotator tasks read these
        train, validation, test = load_task(cfg.task, cfg.path, seed, annotation=annotation)
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
    else:
        validation = first(validation, cfg.max_eval_examples)
    if cfg.test and cfg.test != BUILTIN_RT:
        test = read_split(cfg.test, cfg, names, cfg.max_eval_examples, "test")
    return train, validation, test
