"""Your own multi-annotator files (data.train / validation / test with data.annotations.format)."""

from __future__ import annotations

from ..data.examples import TaskDataset
from ..errors import DataError
from .config import AnnotationConfig
from .dataset import Splits, annotated_splits, group_names, to_task_dataset
from .readers import read_annotation_file


def _read(path, cfg, label_names, name: str):
    """One file in data.annotations.format with the data section's columns (``cfg`` is a DataConfig)."""
    options: AnnotationConfig = cfg.annotations or AnnotationConfig()
    return read_annotation_file(
        path,
        options.format,
        text_column=cfg.text_column,
        text_pair_column=cfg.text_pair_column,
        label_column=cfg.label_column,
        label_names=label_names,
        item_column=options.item_column,
        annotator_column=options.annotator_column,
        count_columns=options.count_columns,
        rating_bins=options.rating_bins,
        group_columns=options.group_columns,
        name=name,
    )


def load_annotated_files(cfg, seed: int) -> Splits:
    """(train, validation, test) from the data section's files, read in data.annotations.format."""
    if not cfg.train:
        raise DataError("data.annotations.format is set but data.train is not; point it at the annotation file")
    train = _read(cfg.train, cfg, cfg.label_names, "train")
    names = list(train.label_names)
    validation = _read(cfg.validation, cfg, names, "validation") if cfg.validation else None
    test = _read(cfg.test, cfg, names, "test") if cfg.test else None
    return annotated_splits(
        train, validation, test, cfg.target, cfg.annotations, seed=seed, validation_fraction=cfg.validation_fraction
    )


def read_annotated_split(path, cfg, label_names) -> TaskDataset:
    """One evaluation split (`prefalign eval --data`): majority labels, the annotators' distribution and
    the groups in meta, read in data.annotations.format."""
    options: AnnotationConfig = cfg.annotations or AnnotationConfig()
    items = _read(path, cfg, label_names, "data")
    groups = group_names([items], options.group_columns or (), options.min_group_annotators)
    return to_task_dataset(items, "majority", groups=groups)
