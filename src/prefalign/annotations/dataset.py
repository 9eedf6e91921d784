"""From annotated items to the TaskDataset every method trains on, with what evaluation needs in meta.

Each example's ``meta`` keeps ``annotation_dist`` (the annotators' label distribution, what the
disagreement metrics compare against), ``n_annotations`` and, where annotator groups are known,
``group_dist`` (``G x C``: each group's label distribution on the item, zeros where the group gave
none) with ``groups`` naming the rows. ``weight`` holds a CROWDLAB weight when asked for.
Where annotator ids are known, ``annotators`` lists who labelled the item (and
``annotator_attributes`` their attributes, one mapping each). With ``target: annotators`` the
training split holds one example per (item, annotator, label) row instead, labelled with that
annotator's label and marked ``annotator_row``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from ..data.examples import Example, TaskDataset
from ..errors import DataError
from .config import AnnotationConfig
from .formats import AnnotatedItems
from .targets import compute_targets, label_distribution
from .weights import crowdlab_weights

Splits = tuple[TaskDataset, TaskDataset, TaskDataset | None]


def group_names(items: Sequence[AnnotatedItems], columns: Sequence[str], min_annotators: int) -> list[str]:
    """'attribute=value' groups with at least ``min_annotators`` annotators over all ``items``, sorted."""
    members: dict[str, set[str]] = {}
    for part in items:
        workers = set(part.long["worker"]) if part.long is not None else set()
        for worker in workers:
            for col in columns:
                value = part.attributes.get(worker, {}).get(col)
                if value is not None:
                    members.setdefault(f"{col}={value}", set()).add(worker)
    return sorted(g for g, ws in members.items() if len(ws) >= min_annotators)


def group_distributions(items: AnnotatedItems, groups: Sequence[str]) -> np.ndarray:
    """``(N, G, C)``: each group's label distribution per item; a row of zeros where it gave no label."""
    n, c = len(items), len(items.label_names)
    counts = np.zeros((n, len(groups), c))
    if items.long is None or not groups:
        return counts
    index = {g: j for j, g in enumerate(groups)}
    for task, worker, label in items.long[["task", "worker", "label"]].itertuples(index=False):
        for col, value in items.attributes.get(worker, {}).items():
            j = index.get(f"{col}={value}")
            if j is not None:
                counts[task, j, label] += 1
    total = counts.sum(-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def to_task_dataset(
    items: AnnotatedItems,
    target: str = "majority",
    *,
    seed: int = 0,
    groups: Sequence[str] = (),
    weights: np.ndarray | None = None,
) -> TaskDataset:
    """Examples labelled by ``target`` (hard label and, for soft targets, the distribution), with the
    annotators' distribution, group distributions and weights in meta; ``annotators``: one example per
    annotation row."""
    if target == "annotators":
        return annotator_rows(items, groups=groups)
    labels, soft = compute_targets(items, target, seed=seed)
    dist = label_distribution(items.counts)
    group_dist = group_distributions(items, groups) if groups else None
    names = tuple(groups)
    who = item_annotators(items)
    examples = []
    for i in range(len(items)):
        meta = {
            "item": items.item_ids[i],
            "annotation_dist": dist[i].tolist(),
            "n_annotations": int(items.counts[i].sum()),
        }
        if group_dist is not None:
            meta["group_dist"], meta["groups"] = group_dist[i].tolist(), names
        meta.update(reference_meta(items, i))
        if weights is not None:
            meta["weight"] = float(weights[i])
        meta.update(who.get(i, {}))
        examples.append(
            Example(
                text=items.texts[i],
                text_pair=items.text_pairs[i] if items.text_pairs else None,
                label=int(labels[i]),
                soft_label=None if soft is None else soft[i].tolist(),
                meta=meta,
            )
        )
    return TaskDataset(examples, list(items.label_names), items.name)


def reference_meta(items: AnnotatedItems, i: int) -> dict:
    """Item ``i``'s released reference labels (``reference_label``, ``reference_dist``) when the source
    has them: what Le-Wi-Di's scorer compares with (``lewidi_ce``, ``micro_f1``)."""
    if items.reference_labels is None or items.reference_dist is None:
        return {}
    return {"reference_label": int(items.reference_labels[i]), "reference_dist": items.reference_dist[i].tolist()}


def item_annotators(items: AnnotatedItems) -> dict[int, dict]:
    """Per item index: ``annotators`` (ids, in row order), ``annotator_attributes`` (one mapping each) and
    ``annotator_labels`` (each one's class index: what Le-Wi-Di 2025's perspectivist score compares with)."""
    out: dict[int, dict] = {}
    if items.long is None:
        return out
    for task, worker, label in items.long[["task", "worker", "label"]].itertuples(index=False):
        entry = out.setdefault(int(task), {"annotators": [], "annotator_attributes": [], "annotator_labels": []})
        entry["annotators"].append(str(worker))
        entry["annotator_attributes"].append(dict(items.attributes.get(str(worker), {})))
        entry["annotator_labels"].append(int(label))
    return out


def annotator_rows(items: AnnotatedItems, *, groups: Sequence[str] = ()) -> TaskDataset:
    """One example per (item, annotator, label) row: the annotator's own label, the annotator (and their
    attributes) in meta, beside the item's annotation distribution."""
    if items.long is None:
        raise DataError(
            f"{items.name}: target 'annotators' trains on each annotator's own labels, but this data gives "
            "per-class counts without annotator ids; use target majority or soft"
        )
    dist = label_distribution(items.counts)
    group_dist = group_distributions(items, groups) if groups else None
    examples = []
    for task, worker, label in items.long[["task", "worker", "label"]].itertuples(index=False):
        i, worker = int(task), str(worker)
        meta = {
            "item": items.item_ids[i],
            "annotation_dist": dist[i].tolist(),
            "n_annotations": int(items.counts[i].sum()),
            "annotators": [worker],
            "annotator_attributes": [dict(items.attributes.get(worker, {}))],
            "annotator_row": True,
        }
        if group_dist is not None:
            meta["group_dist"], meta["groups"] = group_dist[i].tolist(), tuple(groups)
        meta.update(reference_meta(items, i))
        examples.append(
            Example(
                text=items.texts[i],
                text_pair=items.text_pairs[i] if items.text_pairs else None,
                label=int(label),
                meta=meta,
            )
        )
    return TaskDataset(examples, list(items.label_names), items.name)


def carve(
    items: AnnotatedItems, fraction: float, seed: int, names: tuple[str, str]
) -> tuple[AnnotatedItems, AnnotatedItems]:
    """Shuffle items with ``seed`` and hold ``fraction`` of them out (at least one)."""
    n_out = max(1, int(round(len(items) * fraction)))
    if len(items) - n_out < 2:
        raise DataError(f"{items.name}: {len(items)} items are too few to hold out {n_out}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    return items.subset(order[n_out:], names[0]), items.subset(order[:n_out], names[1])


def annotated_splits(
    train: AnnotatedItems,
    validation: AnnotatedItems | None,
    test: AnnotatedItems | None,
    target: str | None,
    options: AnnotationConfig,
    *,
    seed: int,
    validation_fraction: float = 0.1,
    default_groups: Sequence[str] = (),
) -> Splits:
    """(train, validation, test) TaskDatasets: train labelled by ``target``; validation and test by
    majority vote (ties drawn with a fixed seed), every split keeping the annotators' distribution.

    Without a validation split, ``validation_fraction`` of the train items are held out with
    ``seed`` before any aggregate is fitted, so the aggregate never sees them.
    """
    if validation is None:
        train, validation = carve(train, validation_fraction or 0.1, seed, (train.name, f"{train.name}-validation"))
    parts = [p for p in (train, validation, test) if p is not None]
    columns = options.group_columns if options.group_columns is not None else list(default_groups)
    groups = group_names(parts, columns, options.min_group_annotators) if columns else []
    weights = None
    if options.weights == "crowdlab" and target == "annotators":
        raise DataError("data.annotations.weights=crowdlab weighs items; target 'annotators' trains on rows: drop one")
    if options.weights == "crowdlab":
        weights = crowdlab_weights(train, seed=0)
    out = [to_task_dataset(train, target or "majority", seed=0, groups=groups, weights=weights)]
    out += [
        to_task_dataset(p, "majority", seed=0, groups=groups) if p is not None else None for p in (validation, test)
    ]
    return out[0], out[1], out[2]
