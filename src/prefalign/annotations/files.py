"""Your own multi-annotator files (data.train / validation / test with data.annotations.format)."""

from __future__ import annotations

from ..data.examples import TaskDataset
from ..errors import DataError
from .config import AnnotationConfig
from .dataset import Splits, annotated_splits, group_names, to_task_dataset
from .loaders import read_annotation_file


def load_annotated_files(cfg, seed: int) -> Splits:
    """(train, validation, test) from the data section's files, read in data.annotations.format."""
    options = AnnotationConfig.from_dict(cfg.annotations or {})
    if not cfg.train:
        raise DataError("data.annotations.format is set but data.train is not; point it at the annotation file")

    def read(path, name, label_names):
        if not path:
            return None
        return read_annotation_file(path, options.format, text_column=cfg.text_column,
                                    text_pair_column=cfg.text_pair_column, label_column=cfg.label_column,
                                    label_names=label_names, item_column=options.item_column,
                                    annotator_column=options.annotator_column, count_columns=options.count_columns,
                                    rating_bins=options.rating_bins, group_columns=options.group_columns, name=name)

    train = read(cfg.train, "train", cfg.label_names)
    names = list(train.label_names)
    validation, test = read(cfg.validation, "validation", names), read(cfg.test, "test", names)
    return annotated_splits(train, validation, test, cfg.target, options, seed=seed,
                            validation_fraction=cfg.validation_fraction)


def read_annotated_split(path, cfg, label_names) -> TaskDataset:
    """One evaluation split (`prefalign eval --data`): majority labels, the annotators' distribution and
    the groups in meta, read in data.annotations.format."""
    options = AnnotationConfig.from_dict(cfg.annotations or {})
    items = read_annotation_file(path, options.format, text_column=cfg.text_column,
                                 text_pair_column=cfg.text_pair_column, label_column=cfg.label_column,
                                 label_names=label_names, item_column=options.item_column,
                                 annotator_column=options.annotator_column, count_columns=options.count_columns,
                                 rating_bins=options.rating_bins, group_columns=options.group_columns, name="data")
    groups = group_names([items], options.group_columns or (), options.min_group_annotators)
    return to_task_dataset(items, "majority", groups=groups)
