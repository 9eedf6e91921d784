"""Multi-annotator data in one in-memory form, from crowd-kit's long rows, label lists or per-class counts.

Every reader ends in ``AnnotatedItems``: per item its text, the count of annotations per class
``(N, C)`` and, when annotator ids are known, crowd-kit's long table (``task``, ``worker``,
``label``) that the aggregation models need. Inputs are checked up front (cleanlab style): an item
without annotations, a label outside the label set or a rating that needs binning is a DataError
naming the item or row; annotators who gave a single annotation only draw an ``AnnotationWarning``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError

if TYPE_CHECKING:  # annotations only
    import pandas as pd


class AnnotationWarning(UserWarning):
    """Data that trains, but that a user should know about (for example one-label annotators)."""


@dataclass
class AnnotatedItems:
    """Items with every annotation they received.

    ``counts[i, c]`` is how many annotators gave item ``i`` class ``c``. ``long`` (or None when the
    source gives counts only, as Davidson et al. do) has one row per annotation: ``task`` (item
    index), ``worker`` (annotator id) and ``label`` (class index). ``attributes`` maps an annotator
    id to their demographics (POPQUORN) or group (ArMIS). ``reference_labels`` (N,) and
    ``reference_dist`` (N, C), when the source releases them (Le-Wi-Di's ``hard_label`` and
    ``soft_label``), are the labels a shared task's own scorer compares against: only the scores named
    after that task read them.
    """

    texts: list[str]
    label_names: list[str]
    counts: np.ndarray
    long: pd.DataFrame | None = None
    text_pairs: list[str | None] | None = None
    item_ids: list[str] | None = None
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    name: str = "annotations"
    reference_labels: np.ndarray | None = None
    reference_dist: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=float)
        n, c = len(self.texts), len(self.label_names)
        if self.counts.shape != (n, c):
            raise DataError(f"{self.name}: counts have shape {self.counts.shape}, expected ({n}, {c})")
        if (self.reference_labels is None) != (self.reference_dist is None):
            raise DataError(f"{self.name}: give both reference labels and reference distributions, or neither")
        if self.reference_labels is not None:
            self.reference_labels = np.asarray(self.reference_labels, dtype=int)
            self.reference_dist = np.asarray(self.reference_dist, dtype=float)
            if self.reference_labels.shape != (n,) or self.reference_dist.shape != (n, c):
                raise DataError(
                    f"{self.name}: reference labels {self.reference_labels.shape} and distributions "
                    f"{self.reference_dist.shape} must be ({n},) and ({n}, {c})"
                )
        if c < 2:
            raise DataError(f"{self.name}: need at least two classes, got {self.label_names}")
        if self.item_ids is None:
            self.item_ids = [str(i) for i in range(n)]
        empty = np.flatnonzero(self.counts.sum(1) <= 0)
        if len(empty):
            shown = ", ".join(str(self.item_ids[i]) for i in empty[:5])
            raise DataError(
                f"{self.name}: {len(empty)} item(s) have no annotations (items {shown}); annotate them or drop them"
            )
        for i, text in enumerate(self.texts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{self.name}: item {self.item_ids[i]} has an empty text")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def has_annotators(self) -> bool:
        return self.long is not None

    def subset(self, indices: Sequence[int], name: str | None = None) -> AnnotatedItems:
        """The items at ``indices`` (in that order), with their annotations."""
        idx = np.asarray(indices, dtype=int)
        long = None
        if self.long is not None:
            remap = {int(old): new for new, old in enumerate(idx)}
            long = self.long[self.long["task"].isin(remap)].copy()
            long["task"] = long["task"].map(remap)
            long = long.sort_values("task", kind="stable").reset_index(drop=True)
        pick = lambda xs: None if xs is None else [xs[i] for i in idx]  # noqa: E731
        return AnnotatedItems(
            pick(self.texts),
            list(self.label_names),
            self.counts[idx],
            long,
            pick(self.text_pairs),
            pick(self.item_ids),
            dict(self.attributes),
            name or self.name,
            None if self.reference_labels is None else self.reference_labels[idx],
            None if self.reference_dist is None else self.reference_dist[idx],
        )


def _warn_single_label_annotators(long: pd.DataFrame, name: str) -> None:
    per_worker = long.groupby("worker").size()
    single = per_worker[per_worker == 1]
    if len(single):
        warnings.warn(
            f"{name}: {len(single)} of {len(per_worker)} annotators gave one label only "
            f"(e.g. {', '.join(map(str, single.index[:3]))}); worker-reliability aggregates "
            "(Dawid-Skene, GLAD, MACE) estimate them from that one label",
            AnnotationWarning,
            stacklevel=4,
        )


# -- labels -------------------------------------------------------------------------------------------
def bin_names(bins: Sequence[float]) -> list[str]:
    """Class names of rating bins: edges [3] -> ['<3', '>=3']; [2, 4] -> ['<2', '2-4', '>=4']."""
    fmt = lambda x: f"{x:g}"  # noqa: E731
    edges = list(bins)
    return [f"<{fmt(edges[0])}"] + [f"{fmt(a)}-{fmt(b)}" for a, b in zip(edges, edges[1:])] + [f">={fmt(edges[-1])}"]


def encode_labels(
    values: Sequence[Any],
    label_names: Sequence[str] | None = None,
    rating_bins: Sequence[float] | None = None,
    *,
    where: str = "annotations",
) -> tuple[np.ndarray, list[str]]:
    """Class indices of raw annotation values, and the label names.

    With ``rating_bins`` (ascending edges) a numeric rating r falls in class k when
    ``bins[k-1] <= r < bins[k]``. Otherwise a value is a class name of ``label_names`` or an index
    into them; without ``label_names`` integer values name their own classes (sorted) and strings
    likewise. A value with a fractional part and no bins is a rating that needs binning.
    """
    raw = list(values)
    for n, v in enumerate(raw, 1):
        if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and not v.strip()):
            raise DataError(f"{where}: annotation {n} has no label; drop the row or fill it in")
    if rating_bins is not None:
        bins = [float(b) for b in rating_bins]
        if not bins or any(lo >= hi for lo, hi in zip(bins, bins[1:])):
            raise DataError(f"{where}: rating_bins {list(rating_bins)} must be ascending edges, e.g. [3]")
        try:
            ratings = np.array([float(v) for v in raw])
        except (TypeError, ValueError):
            bad = next(v for v in raw if not _is_number(v))
            raise DataError(f"{where}: rating {bad!r} is not a number; rating_bins need numeric ratings") from None
        names = list(label_names) if label_names else bin_names(bins)
        if len(names) != len(bins) + 1:
            raise DataError(
                f"{where}: {len(bins)} rating bin edge(s) make {len(bins) + 1} classes, "
                f"but label_names has {len(names)}"
            )
        return np.digitize(ratings, bins).astype(int), [str(x) for x in names]
    keys = [_key(v) for v in raw]
    fractional = [v for v in keys if isinstance(v, float)]
    if fractional:
        raise DataError(
            f"{where}: label {fractional[0]!r} is a rating, not a class; set rating_bins "
            "(data.annotations.rating_bins, e.g. [3]) to bin ratings into classes"
        )
    if label_names is None:
        ints = [k for k in keys if isinstance(k, int)]
        if ints and len(ints) != len(keys):
            raise DataError(f"{where}: labels mix numbers and names; pass label_names")
        uniq = sorted(set(keys))
        names = [str(u) for u in uniq]
        index = {u: i for i, u in enumerate(uniq)}
        return np.array([index[k] for k in keys], dtype=int), names
    names = [str(x) for x in label_names]
    by_name = {x: i for i, x in enumerate(names)}
    out = []
    for n, k in enumerate(keys, 1):
        if isinstance(k, str) and k in by_name:
            out.append(by_name[k])
        elif isinstance(k, int) and 0 <= k < len(names) and str(k) not in by_name:
            out.append(k)
        elif str(k) in by_name:
            out.append(by_name[str(k)])
        else:
            raise DataError(f"{where}: annotation {n} has label {k!r} outside the label set {names}")
    return np.array(out, dtype=int), names


def _is_number(v: Any) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _key(v: Any) -> int | float | str:
    """An annotation value as an int (integer-valued), a float (a rating with a fraction) or a name."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if float(v).is_integer() else float(v)
    s = str(v).strip()
    try:
        f = float(s)
    except ValueError:
        return s
    return int(f) if f.is_integer() else f


# -- constructors ---------------------------------------------------------------------------------------
def from_long(
    frame: pd.DataFrame,
    *,
    item_column: str = "task",
    annotator_column: str = "worker",
    label_column: str = "label",
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_names: Sequence[str] | None = None,
    rating_bins: Sequence[float] | None = None,
    attribute_columns: Sequence[str] = (),
    name: str = "annotations",
) -> AnnotatedItems:
    """Items from long rows, one per (item, annotator, label), as crowd-kit takes them.

    Items keep the order in which they first appear; an item's text is read from its first row.
    """
    import pandas as pd  # slow to import (0.4 s idle): only when annotations are read

    wanted = [
        item_column,
        annotator_column,
        label_column,
        text_column,
        *([text_pair_column] if text_pair_column else []),
        *attribute_columns,
    ]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(f"{name}: no column {missing[0]!r}; available columns: {', '.join(map(str, frame.columns))}")
    if frame.empty:
        raise DataError(f"{name}: no annotation rows")
    labels, names = encode_labels(frame[label_column].tolist(), label_names, rating_bins, where=name)
    item_keys = frame[item_column].astype(str)
    order = list(dict.fromkeys(item_keys))
    index = {k: i for i, k in enumerate(order)}
    task = item_keys.map(index).to_numpy()
    worker = frame[annotator_column].astype(str).to_numpy()
    dupes = pd.Series(list(zip(task, worker))).duplicated()
    if dupes.any():
        row = int(np.flatnonzero(dupes)[0])
        raise DataError(
            f"{name}: annotator {worker[row]} labelled item {order[task[row]]} twice (row {row + 1}); "
            "keep one annotation per annotator and item"
        )
    first = frame.assign(_item=item_keys).drop_duplicates("_item").set_index("_item")
    texts = [str(first.loc[k, text_column]) for k in order]
    pairs = [str(first.loc[k, text_pair_column]) for k in order] if text_pair_column else None
    counts = np.zeros((len(order), len(names)))
    np.add.at(counts, (task, labels), 1.0)
    attributes: dict[str, dict[str, str]] = {}
    if attribute_columns:
        per_worker = frame.assign(_w=worker)[["_w", *attribute_columns]].drop_duplicates()
        clash = per_worker["_w"].duplicated()
        if clash.any():
            raise DataError(
                f"{name}: annotator {per_worker['_w'][clash].iloc[0]} has different "
                f"{', '.join(attribute_columns)} in different rows"
            )
        attributes = {str(r["_w"]): {c: str(r[c]) for c in attribute_columns} for _, r in per_worker.iterrows()}
    long = pd.DataFrame({"task": task, "worker": worker, "label": labels})
    _warn_single_label_annotators(long, name)
    return AnnotatedItems(texts, names, counts, long, pairs, order, attributes, name)


def from_label_lists(
    texts: Sequence[str],
    labels: Sequence[Sequence[Any]],
    annotators: Sequence[Sequence[str]] | None = None,
    *,
    text_pairs: Sequence[str] | None = None,
    item_ids: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    rating_bins: Sequence[float] | None = None,
    name: str = "annotations",
) -> AnnotatedItems:
    """Items from one row each holding the list of labels it received (and, optionally, who gave them)."""
    import pandas as pd  # slow to import (0.4 s idle): only when annotations are read

    if len(labels) != len(texts) or (annotators is not None and len(annotators) != len(texts)):
        raise DataError(f"{name}: {len(texts)} texts but {len(labels)} label lists")
    ids = [str(x) for x in item_ids] if item_ids is not None else [str(i) for i in range(len(texts))]
    for i, ls in enumerate(labels):
        if not len(ls):
            raise DataError(f"{name}: item {ids[i]} has no annotations; annotate it or drop it")
        if annotators is not None and len(annotators[i]) != len(ls):
            raise DataError(f"{name}: item {ids[i]} has {len(ls)} labels but {len(annotators[i])} annotators")
    flat = [v for ls in labels for v in ls]
    codes, names = encode_labels(flat, label_names, rating_bins, where=name)
    task = np.repeat(np.arange(len(texts)), [len(ls) for ls in labels])
    counts = np.zeros((len(texts), len(names)))
    np.add.at(counts, (task, codes), 1.0)
    long = None
    if annotators is not None:
        long = pd.DataFrame({"task": task, "worker": [str(a) for ws in annotators for a in ws], "label": codes})
        _warn_single_label_annotators(long, name)
    return AnnotatedItems(list(texts), names, counts, long, list(text_pairs) if text_pairs else None, ids, {}, name)


def from_counts(
    texts: Sequence[str],
    counts: np.ndarray | Sequence[Sequence[float]],
    label_names: Sequence[str],
    *,
    text_pairs: Sequence[str] | None = None,
    item_ids: Sequence[str] | None = None,
    name: str = "annotations",
) -> AnnotatedItems:
    """Items from per-class annotation counts (no annotator ids: crowd-kit aggregates cannot run)."""
    arr = np.asarray(counts, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != len(label_names):
        raise DataError(f"{name}: counts must have one column per class {list(label_names)}, got shape {arr.shape}")
    if np.isnan(arr).any() or (arr < 0).any() or (arr != np.round(arr)).any():
        row = int(np.flatnonzero(np.isnan(arr).any(1) | (arr < 0).any(1) | (arr != np.round(arr)).any(1))[0])
        raise DataError(f"{name}: item {row + 1} has counts {arr[row].tolist()}; counts must be whole numbers >= 0")
    return AnnotatedItems(
        list(texts),
        [str(x) for x in label_names],
        arr,
        None,
        list(text_pairs) if text_pairs else None,
        [str(x) for x in item_ids] if item_ids else None,
        {},
        name,
    )
