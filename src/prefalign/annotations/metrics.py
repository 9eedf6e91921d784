"""Glue from annotated TaskDatasets to the disagreement metrics in the Trainer and in `prefalign eval`.

The collator puts each example's ``annotation_dist`` (and ``group_dist``) in the batch; the Trainer
gathers them as extra label arrays (``label_names``) beside the majority labels, and
``trainer_metrics`` turns logits plus those arrays into the scores of evaluation.disagreement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..data.examples import Example, TaskDataset
from ..evaluation.disagreement import disagreement_metrics, perspectivist_error_rate

# batch keys only metrics read, never a model; reference_*: a shared task's released labels (Le-Wi-Di's scorer's)
ANNOTATION_KEYS = ("annotation_dist", "group_dist", "reference_dist", "reference_label")


def annotation_keys(*datasets: TaskDataset | None) -> list[str]:
    """The batch keys every given split carries (none unless all carry annotation_dist)."""
    parts = [d for d in datasets if d is not None]
    if not parts or any(d.is_generation or "annotation_dist" not in d.examples[0].meta for d in parts):
        return []
    keys = ["annotation_dist"]
    if all("group_dist" in d.examples[0].meta and d.examples[0].meta["groups"] for d in parts):
        keys.append("group_dist")
    if all("reference_label" in ex.meta for d in parts for ex in d.examples):
        keys += ["reference_dist", "reference_label"]
    return keys


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _numeric(scores: dict) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))}


def trainer_metrics(keys: Sequence[str], groups: Sequence[str] = ()) -> Callable:
    """compute_metrics for transformers.Trainer when label_names are ``["labels", *keys]``."""

    def compute(eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        labels, *extra = eval_pred.label_ids
        arrays = dict(zip(keys, extra))
        return _numeric(
            disagreement_metrics(
                _softmax(logits),
                np.asarray(labels).astype(int),
                arrays["annotation_dist"],
                arrays.get("group_dist"),
                groups if "group_dist" in arrays else (),
                reference_dist=arrays.get("reference_dist"),
                reference_labels=None if "reference_label" not in arrays else arrays["reference_label"].astype(int),
            )
        )

    return compute


def dataset_groups(data: TaskDataset) -> tuple[str, ...]:
    return tuple(data.examples[0].meta.get("groups") or ())


def dataset_metrics(probs: np.ndarray, data: TaskDataset) -> dict[str, float]:
    """The disagreement metrics of predicted ``probs`` (N, C) on an annotated split."""
    labels = np.array([ex.hard_label() for ex in data.examples])
    dist = np.array([ex.meta["annotation_dist"] for ex in data.examples])
    keys = annotation_keys(data)
    group_dist = np.array([ex.meta["group_dist"] for ex in data.examples]) if "group_dist" in keys else None
    reference = "reference_label" in keys
    return _numeric(
        disagreement_metrics(
            probs,
            labels,
            dist,
            group_dist,
            dataset_groups(data) if group_dist is not None else (),
            reference_dist=np.array([ex.meta["reference_dist"] for ex in data.examples]) if reference else None,
            reference_labels=np.array([ex.meta["reference_label"] for ex in data.examples]) if reference else None,
        )
    )


def annotator_rows_of(data: TaskDataset) -> tuple[list[Example], list[int]] | None:
    """One example per (item, annotator) of an annotated split, each asking for that annotator's view, and
    the item index of each row; None when the split does not name its annotators and their labels."""
    if not data.examples or any("annotator_labels" not in ex.meta for ex in data.examples):
        return None
    rows, owner = [], []
    for i, ex in enumerate(data.examples):
        attrs = ex.meta.get("annotator_attributes") or [{}] * len(ex.meta["annotators"])
        for worker, given in zip(ex.meta["annotators"], attrs):
            rows.append(
                Example(
                    text=ex.text,
                    text_pair=ex.text_pair,
                    label=ex.label,
                    meta={"annotators": [worker], "annotator_attributes": [given]},
                )
            )
            owner.append(i)
    return rows, owner


def perspectivist_score(data: TaskDataset, row_predictions: Sequence[int], owner: Sequence[int]) -> float:
    """Le-Wi-Di 2025's error rate from one predicted label per (item, annotator) row (``annotator_rows_of``)."""
    predicted: list[list[int]] = [[] for _ in data.examples]
    for i, label in zip(owner, row_predictions):
        predicted[i].append(int(label))
    return perspectivist_error_rate([ex.meta["annotator_labels"] for ex in data.examples], predicted)
