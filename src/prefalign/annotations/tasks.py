"""The registered multi-annotator tasks' loaders: original files -> (train, validation, test) TaskDatasets."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .config import AnnotationConfig
from .dataset import annotated_splits, carve
from .loaders import read_davidson, read_lewidi, read_popquorn

SPLIT_SEED = 0  # held-out test items are cut with this fixed seed, whatever the run's seed
POPQUORN_GROUPS = ("gender", "race", "age")


def _options(options: dict) -> tuple[str | None, AnnotationConfig, float]:
    config = options.get("annotations")
    if not isinstance(config, AnnotationConfig):
        config = AnnotationConfig.from_dict(config or {})
    return options.get("target"), config, float(options.get("validation_fraction") or 0.1)


def _lewidi_file(folder: Path, dataset: str, split: str) -> Path:
    for base in (folder, folder / dataset):
        if (base / f"{dataset}_{split}.json").is_file():
            return base / f"{dataset}_{split}.json"
    raise DataError(f"{folder}: task '{dataset.lower()}' needs {dataset}_{split}.json (in data.path or its "
                    f"{dataset}/ folder), as in Le-Wi-Di's datasets/{dataset}/")


def load_lewidi(dataset: str, folder: Path, seed: int, options: dict):
    """Le-Wi-Di's train, dev (validation) and test files."""
    target, config, _ = _options(options)
    train, dev, test = (read_lewidi(_lewidi_file(folder, dataset, s), dataset) for s in ("train", "dev", "test"))
    groups = ("group",) if dataset == "ArMIS" else ()
    if dataset == "ArMIS" and "min_group_annotators" not in (options.get("annotations") or {}):
        config = AnnotationConfig.from_dict({**config.to_dict(), "min_group_annotators": 1})  # one annotator a group
    return annotated_splits(train, dev, test, target, config, seed=seed, default_groups=groups)


def load_popquorn(folder: Path, seed: int, options: dict):
    """POPQUORN offensiveness: a fifth of the items (fixed seed) is the test set."""
    target, config, fraction = _options(options)
    path = folder / "raw_data.csv"
    if not path.is_file():
        raise DataError(f"{folder}: task 'popquorn' needs raw_data.csv (POPQUORN's dataset/offensiveness/raw_data.csv)")
    items = read_popquorn(path, config.rating_bins or [3.0])
    rest, test = carve(items, 0.2, SPLIT_SEED, ("popquorn/train", "popquorn/test"))
    return annotated_splits(rest, None, test, target, config, seed=seed, validation_fraction=fraction,
                            default_groups=POPQUORN_GROUPS)


def load_davidson(folder: Path, seed: int, options: dict):
    """Davidson et al.: 2,000 tweets (fixed seed) are the test set."""
    target, config, fraction = _options(options)
    path = folder / "labeled_data.csv"
    if not path.is_file():
        raise DataError(f"{folder}: task 'davidson' needs labeled_data.csv (Davidson et al.'s data/labeled_data.csv)")
    items = read_davidson(path)
    rest, test = carve(items, min(2000 / len(items), 0.2), SPLIT_SEED, ("davidson/train", "davidson/test"))
    return annotated_splits(rest, None, test, target, config, seed=seed, validation_fraction=fraction)
