"""Multi-annotator tasks (prefalign.annotations): every annotation kept, the target chosen by data.target.

Le-Wi-Di's MD-Agreement, ConvAbuse and ArMIS, POPQUORN and Davidson et al.: original files ->
(train, validation, test) TaskDatasets. Their loaders take a third argument, the ``annotation``
options of ``load_task``.
"""

from __future__ import annotations

from pathlib import Path

from ..annotations.config import AnnotationConfig
from ..annotations.dataset import annotated_splits, carve
from ..annotations.readers import read_davidson, read_lewidi, read_popquorn
from ..errors import DataError
from .registry import SPLIT_SEED, Splits, TaskDefinition, register

POPQUORN_GROUPS = ("gender", "race", "age")


def _options(options: dict) -> tuple[str | None, AnnotationConfig, float]:
    config = options.get("annotations")
    if not isinstance(config, AnnotationConfig):
        config = AnnotationConfig.from_dict(config or {})
    return options.get("target"), config, float(options.get("validation_fraction") or 0.1)


# -- Le-Wi-Di (SemEval-2023 Task 11) -------------------------------------------------------------------------
def _lewidi_file(folder: Path, dataset: str, split: str) -> Path:
    for base in (folder, folder / dataset):
        if (base / f"{dataset}_{split}.json").is_file():
            return base / f"{dataset}_{split}.json"
    raise DataError(
        f"{folder}: task '{dataset.lower()}' needs {dataset}_{split}.json (in data.path or its "
        f"{dataset}/ folder), as in Le-Wi-Di's datasets/{dataset}/"
    )


def load_lewidi(dataset: str, folder: Path, seed: int, options: dict) -> Splits:
    """Le-Wi-Di's train, dev (validation) and test files."""
    target, config, _ = _options(options)
    train, dev, test = (read_lewidi(_lewidi_file(folder, dataset, s), dataset) for s in ("train", "dev", "test"))
    groups = ("group",) if dataset == "ArMIS" else ()
    if dataset == "ArMIS" and "min_group_annotators" not in (options.get("annotations") or {}):
        config = AnnotationConfig.from_dict({**config.to_dict(), "min_group_annotators": 1})  # one annotator a group
    return annotated_splits(train, dev, test, target, config, seed=seed, default_groups=groups)


def _lewidi_loader(dataset: str):
    def load(folder: Path, seed: int, options: dict) -> Splits:
        return load_lewidi(dataset, folder, seed, options)

    return load


# -- POPQUORN ----------------------------------------------------------------------------------------------------
def load_popquorn(folder: Path, seed: int, options: dict) -> Splits:
    """POPQUORN offensiveness: a fifth of the items (fixed seed) is the test set."""
    target, config, fraction = _options(options)
    path = folder / "raw_data.csv"
    if not path.is_file():
        raise DataError(f"{folder}: task 'popquorn' needs raw_data.csv (POPQUORN's dataset/offensiveness/raw_data.csv)")
    items = read_popquorn(path, config.rating_bins or [3.0])
    rest, test = carve(items, 0.2, SPLIT_SEED, ("popquorn/train", "popquorn/test"))
    return annotated_splits(
        rest, None, test, target, config, seed=seed, validation_fraction=fraction, default_groups=POPQUORN_GROUPS
    )


# -- Davidson et al. (2017) ----------------------------------------------------------------------------------------
def load_davidson(folder: Path, seed: int, options: dict) -> Splits:
    """Davidson et al.: 2,000 tweets (fixed seed) are the test set."""
    target, config, fraction = _options(options)
    path = folder / "labeled_data.csv"
    if not path.is_file():
        raise DataError(f"{folder}: task 'davidson' needs labeled_data.csv (Davidson et al.'s data/labeled_data.csv)")
    items = read_davidson(path)
    rest, test = carve(items, min(2000 / len(items), 0.2), SPLIT_SEED, ("davidson/train", "davidson/test"))
    return annotated_splits(rest, None, test, target, config, seed=seed, validation_fraction=fraction)


# -- the registered tasks ----------------------------------------------------------------------------------------
_DISAGREEMENT = {"annotated": True}
_LEWIDI_FILES = "Le-Wi-Di's {DS}_train.json, {DS}_dev.json and {DS}_test.json (or the lewidi folder holding {DS}/)"

for _name, _ds, _what, _words in (
    (
        "md-agreement",
        "MD-Agreement",
        "English tweets, offensive or not, 5 annotators each",
        "Tweet: {text}\nIs this tweet offensive? Answer yes or no.\nAnswer:",
    ),
    (
        "convabuse",
        "ConvAbuse",
        "user-chatbot dialogues, abusive or not (severity <= -1), 2-8 annotators each",
        "{text}\nIs the user's last message abusive? Answer yes or no.\nAnswer:",
    ),
    (
        "armis",
        "ArMIS",
        "Arabic tweets, misogynous or not, 3 annotators (each a group) each",
        "Tweet: {text}\nIs this tweet misogynous? Answer yes or no.\nAnswer:",
    ),
):
    register(
        TaskDefinition(
            name=_name,
            kind="classification",
            metric="accuracy",
            description=f"Le-Wi-Di (SemEval-2023 Task 11) {_ds}: {_what}; dev is validation; every annotation is "
            "kept, data.target picks what trains, test scores accuracy against the majority and the "
            "annotators' distribution",
            files=_LEWIDI_FILES.replace("{DS}", _ds),
            load=_lewidi_loader(_ds),
            decoder_template=_words,
            verbalizers=[" no", " yes"],
            extra={**_DISAGREEMENT, **({"groups": True} if _ds == "ArMIS" else {})},
        )
    )

register(
    TaskDefinition(
        name="popquorn",
        kind="classification",
        metric="accuracy",
        description="POPQUORN offensiveness: Reddit comments rated 1-5 by 5-10 annotators with known demographics; "
        "ratings binned by data.annotations.rating_bins (default [3]: >= 3 offensive); a fifth of the "
        "items (fixed seed) is test; scores per gender, race and age group and the worst group",
        files="POPQUORN's dataset/offensiveness/raw_data.csv",
        load=load_popquorn,
        decoder_template="Comment: {text}\nIs this comment offensive? Answer yes or no.\nAnswer:",
        verbalizers=[" no", " yes"],
        extra={**_DISAGREEMENT, "groups": True},
    )
)

register(
    TaskDefinition(
        name="davidson",
        kind="classification",
        metric="accuracy",
        description="Davidson et al. (2017) tweets: hate speech, offensive language or neither, as per-class "
        "annotator counts (no annotator ids: majority or soft targets only); 2,000 tweets (fixed seed) "
        "are test",
        files="Davidson et al.'s data/labeled_data.csv",
        load=load_davidson,
        decoder_template="Tweet: {text}\nIs this tweet hate speech, offensive, or neither?\nAnswer:",
        verbalizers=[" hate", " offensive", " neither"],
        extra=_DISAGREEMENT,
    )
)
