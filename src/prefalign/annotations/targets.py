"""What a method trains on: majority vote, the annotators' label distribution, or a crowd-kit aggregate.

``majority`` and ``soft`` need only the per-class counts. The aggregates (Dawid-Skene, GLAD, MACE,
one-coin Dawid-Skene) are crowd-kit's models fitted on the long (task, worker, label) table; a
``-soft`` suffix trains on their posterior over classes, no suffix on its argmax. Nothing here
re-implements an aggregation model.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DataError
from .formats import AnnotatedItems

AGGREGATES = {"dawid-skene": "DawidSkene", "glad": "GLAD", "mace": "MACE", "one-coin-dawid-skene": "OneCoinDawidSkene"}
# "annotators" is no aggregate: every (item, annotator, label) row trains (annotations.dataset.annotator_rows).
TARGETS = ("majority", "soft", *AGGREGATES, *(f"{name}-soft" for name in AGGREGATES), "annotators")


def _check_counts(counts: np.ndarray) -> np.ndarray:
    arr = np.asarray(counts, dtype=float)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"counts must be (items, classes) with at least two classes, got shape {arr.shape}")
    if (arr < 0).any() or np.isnan(arr).any():
        raise ValueError("counts must be non-negative numbers")
    if (arr.sum(1) <= 0).any():
        raise ValueError(f"item {int(np.flatnonzero(arr.sum(1) <= 0)[0])} has no annotations")
    return arr


def label_distribution(counts: np.ndarray) -> np.ndarray:
    """The empirical distribution of each item's annotations: counts / their row sum (soft labels)."""
    arr = _check_counts(counts)
    return arr / arr.sum(1, keepdims=True)


def majority_vote(counts: np.ndarray, *, seed: int = 0, ties: str = "random") -> np.ndarray:
    """Each item's most frequent class; ``ties`` 'random' draws among the tied classes with ``seed``
    (as Le-Wi-Di's hard labels do), 'lowest' takes the lowest class index."""
    arr = _check_counts(counts)
    best = arr == arr.max(1, keepdims=True)
    if ties == "lowest":
        return best.argmax(1)
    if ties != "random":
        raise ValueError(f"ties must be 'random' or 'lowest', not {ties!r}")
    rng = np.random.default_rng(seed)
    noise = rng.random(arr.shape)  # one draw per cell, so an item's pick does not depend on the others' ties
    return np.where(best, noise, -1.0).argmax(1)


def aggregate(items: AnnotatedItems, method: str, *, seed: int = 0) -> np.ndarray:
    """Posterior over classes ``(N, C)`` from crowd-kit's ``method`` fitted on the items' annotations."""
    if method not in AGGREGATES:
        raise ConfigError(f"unknown aggregate {method!r}; choose one of {', '.join(AGGREGATES)}")
    if not items.has_annotators:
        raise DataError(
            f"{items.name}: target '{method}' models each annotator's reliability, but this data gives "
            "per-class counts without annotator ids; use target majority or soft"
        )
    try:
        from crowdkit import aggregation
    except ImportError:
        raise ConfigError(f"target '{method}' needs crowd-kit: pip install 'prefalign[crowd]'") from None
    model = getattr(aggregation, AGGREGATES[method])
    model = model(random_state=seed) if method == "mace" else model()
    proba = model.fit_predict_proba(items.long[["task", "worker", "label"]])
    n, c = len(items), len(items.label_names)
    # crowd-kit returns one row per task it saw and one column per class that occurred: put both back.
    proba = proba.reindex(index=range(n), columns=range(c), fill_value=0.0).to_numpy(dtype=float)
    if np.isnan(proba).any() or (proba.sum(1) <= 0).any():
        raise DataError(f"{items.name}: {method} gave no posterior for some items")
    return proba / proba.sum(1, keepdims=True)


def compute_targets(items: AnnotatedItems, target: str, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """(hard labels (N,), soft targets (N, C) or None) for ``target`` (one of TARGETS)."""
    if target not in TARGETS:
        raise ConfigError(f"data.target: unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if target == "annotators":
        raise ConfigError("target 'annotators' trains on annotation rows, not one target per item (to_task_dataset)")
    if target == "majority":
        return majority_vote(items.counts, seed=seed), None
    if target == "soft":
        dist = label_distribution(items.counts)
        return majority_vote(items.counts, seed=seed), dist
    soft = target.endswith("-soft")
    proba = aggregate(items, target.removesuffix("-soft"), seed=seed)
    return proba.argmax(1), (proba if soft else None)
