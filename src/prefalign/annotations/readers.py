"""Readers for real multi-annotator sets in their original files, and for your own files.

* Le-Wi-Di (SemEval-2023 Task 11): ``<DS>_{train,dev,test}.json``, one JSON object keyed by item id;
  comma-separated ``annotators`` and ``annotations`` per item. ConvAbuse's annotations are the
  abuse-severity scale -3..1, where <= -1 means abusive (class 1); its text is a JSON dialogue.
* POPQUORN offensiveness: ``raw_data.csv``, one row per (item, annotator) with a 1-5 rating and the
  annotator's gender, race, age, occupation and education.
* Davidson et al. (2017): ``labeled_data.csv`` with per-class annotator counts (no annotator ids).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.readers import _read_rows
from ..errors import DataError
from .formats import AnnotatedItems, AnnotationWarning, from_counts, from_label_lists, from_long

LEWIDI_SETS = {
    "MD-Agreement": ["not_offensive", "offensive"],
    "ConvAbuse": ["not_abusive", "abusive"],
    "ArMIS": ["not_misogynous", "misogynous"],
}
CONVABUSE_TURNS = (("prev_agent", "Agent"), ("prev_user", "User"), ("agent", "Agent"), ("user", "User"))
POPQUORN_ATTRIBUTES = ("gender", "race", "age", "occupation", "education")
DAVIDSON_CLASSES = ("hate_speech", "offensive_language", "neither")


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason}); re-save it as UTF-8") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON: {e}") from e
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a JSON object keyed by item id (Le-Wi-Di's format)")
    return data


def _convabuse_text(raw: str, where: str) -> str:
    try:
        turns = json.loads(raw)
    except json.JSONDecodeError:
        raise DataError(
            f"{where}: ConvAbuse text is not the JSON dialogue (prev_agent, prev_user, agent, user)"
        ) from None
    lines = [f"{who}: {turns[key].strip()}" for key, who in CONVABUSE_TURNS if str(turns.get(key) or "").strip()]
    return "\n".join(lines)


def _released_labels(record: dict, where: str) -> tuple[int, list[float]] | None:
    """A Le-Wi-Di record's released ``hard_label`` and ``soft_label`` ("0", "1"), or None when it has
    neither (the organisers' scorer reads these, rounded as released, not the annotations)."""
    hard, soft = record.get("hard_label"), record.get("soft_label")
    if hard is None and soft is None:
        return None
    try:
        label, dist = int(hard), [float(soft["0"]), float(soft["1"])]
        if label not in (0, 1):
            raise ValueError(label)
        return label, dist
    except (TypeError, ValueError, KeyError):
        raise DataError(
            f'{where}: hard_label must be 0 or 1 and soft_label an object with keys "0" and "1", '
            f"got {hard!r} and {soft!r}; fix the record or remove both fields"
        ) from None


def read_lewidi(path: str | Path, dataset: str) -> AnnotatedItems:
    """One Le-Wi-Di split file (``MD-Agreement``, ``ConvAbuse`` or ``ArMIS``) as annotated items."""
    path = Path(path)
    if dataset not in LEWIDI_SETS:
        raise DataError(f"unknown Le-Wi-Di set {dataset!r}; choose one of {', '.join(LEWIDI_SETS)}")
    records = _json_object(path)
    texts, labels, workers, ids, released = [], [], [], [], []
    groups: dict[str, dict[str, str]] = {}
    unpaired: list[str] = []
    for item_id, r in records.items():
        where = f"{path} item {item_id}"
        if not isinstance(r, dict) or "text" not in r or "annotations" not in r or "annotators" not in r:
            raise DataError(f"{where}: needs text, annotators and annotations fields")
        values = [v.strip() for v in str(r["annotations"]).split(",") if v.strip()]
        who = [w.strip() for w in str(r["annotators"]).split(",") if w.strip()]
        if not values:
            raise DataError(f"{where}: has no annotations; annotate it or drop it")
        if len(values) != len(who):  # MD-Agreement test items 1683 and 2038 list 6 annotators for 5 labels
            unpaired.append(str(item_id))
            who = [f"{item_id}:unpaired{k}" for k in range(len(values))]
        if dataset == "ConvAbuse":  # severity -3..1; <= -1 is abusive
            try:
                values = [int(int(v) <= -1) for v in values]
            except ValueError:
                raise DataError(
                    f"{where}: ConvAbuse annotations must be integers -3..1, got {r['annotations']!r}"
                ) from None
            text = _convabuse_text(r["text"], where)
        else:
            text = str(r["text"])
        if dataset == "ArMIS":  # other_info maps each annotator to a group, e.g. "Moderate_Female"
            for worker, group in (r.get("other_info") or {}).items():
                groups[str(worker)] = {"group": str(group)}
        texts.append(text)
        labels.append(values)
        workers.append(who)
        ids.append(str(item_id))
        released.append(_released_labels(r, where))
    items = from_label_lists(
        texts,
        labels,
        workers,
        item_ids=ids,
        label_names=LEWIDI_SETS[dataset],
        name=f"{dataset}/{path.stem.rsplit('_', 1)[-1]}",
    )
    items.attributes = groups
    if all(r is not None for r in released):  # the task's scorer compares with these, as released
        items.reference_labels = np.array([r[0] for r in released], dtype=int)
        items.reference_dist = np.array([r[1] for r in released], dtype=float)
    if unpaired:
        warnings.warn(
            f"{path}: items {', '.join(unpaired[:5])} list a different number of annotators than labels; "
            "their labels are kept, each under an annotator id of its own",
            AnnotationWarning,
            stacklevel=2,
        )
    return items


def read_popquorn(
    path: str | Path, rating_bins: Sequence[float] = (3.0,), label_names: Sequence[str] | None = None
) -> AnnotatedItems:
    """POPQUORN's raw_data.csv: 1-5 offensiveness ratings binned by ``rating_bins`` (default [3]:
    1-2 not offensive, 3-5 offensive), with each annotator's demographics as attributes."""
    import pandas as pd  # slow to import (0.4 s idle): only when annotations are read

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as CSV: {e}") from e
    if label_names is None and list(rating_bins) == [3.0]:
        label_names = ["not_offensive", "offensive"]
    return from_long(
        frame,
        item_column="instance_id",
        annotator_column="user_id",
        label_column="offensiveness",
        text_column="text",
        rating_bins=rating_bins,
        label_names=label_names,
        attribute_columns=[c for c in POPQUORN_ATTRIBUTES if c in frame.columns],
        name="popquorn",
    )


def read_davidson(path: str | Path) -> AnnotatedItems:
    """Davidson et al.'s labeled_data.csv: per-class annotator counts per tweet."""
    import pandas as pd  # slow to import (0.4 s idle): only when annotations are read

    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as CSV: {e}") from e
    missing = [c for c in ("tweet", *DAVIDSON_CLASSES) if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; expected Davidson et al.'s labeled_data.csv")
    ids = frame[frame.columns[0]].astype(str).tolist()
    return from_counts(
        frame["tweet"].astype(str).tolist(),
        frame[list(DAVIDSON_CLASSES)].to_numpy(),
        list(DAVIDSON_CLASSES),
        item_ids=ids,
        name="davidson",
    )


# -- your own files -------------------------------------------------------------------------------------
def _as_list(value, where: str) -> list:
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                parsed = json.loads(s)
            except json.JSONDecodeError:
                raise DataError(f"{where}: {value!r} is not a JSON list") from None
            return list(parsed)
        return [v.strip() for v in s.split(",") if v.strip()]
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [value]


def read_annotation_file(
    path: str | Path,
    fmt: str,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    item_column: str = "task",
    annotator_column: str = "worker",
    count_columns: Sequence[str] | None = None,
    rating_bins: Sequence[float] | None = None,
    group_columns: Sequence[str] | None = None,
    name: str | None = None,
) -> AnnotatedItems:
    """A CSV/TSV/JSON(L) file in ``fmt`` 'long', 'lists' or 'counts' as annotated items."""
    import pandas as pd  # slow to import (0.4 s idle): only when annotations are read

    path = Path(path)
    name = name or path.stem
    columns, rows, _ = _read_rows(path, None, None)
    frame = pd.DataFrame(rows, columns=columns)
    if fmt == "long":
        return from_long(
            frame,
            item_column=item_column,
            annotator_column=annotator_column,
            label_column=label_column,
            text_column=text_column,
            text_pair_column=text_pair_column,
            label_names=label_names,
            rating_bins=rating_bins,
            attribute_columns=list(group_columns or ()),
            name=name,
        )
    for col in [text_column, *([text_pair_column] if text_pair_column else [])]:
        if col not in frame.columns:
            raise DataError(f"{path}: no column {col!r}; available columns: {', '.join(columns)}")
    texts = frame[text_column].astype(str).tolist()
    pairs = frame[text_pair_column].astype(str).tolist() if text_pair_column else None
    if fmt == "lists":
        if label_column not in frame.columns:
            raise DataError(f"{path}: no column {label_column!r} with each item's list of labels")
        labels = [_as_list(v, f"{path} row {n}") for n, v in enumerate(frame[label_column], 1)]
        workers = None
        if annotator_column in frame.columns:
            workers = [
                [str(w) for w in _as_list(v, f"{path} row {n}")] for n, v in enumerate(frame[annotator_column], 1)
            ]
        return from_label_lists(
            texts, labels, workers, text_pairs=pairs, label_names=label_names, rating_bins=rating_bins, name=name
        )
    if fmt == "counts":
        missing = [c for c in count_columns or [] if c not in frame.columns]
        if missing:
            raise DataError(f"{path}: no count column {missing[0]!r}; available columns: {', '.join(columns)}")
        try:
            counts = frame[list(count_columns)].astype(float).to_numpy()
        except ValueError as e:
            raise DataError(f"{path}: count columns must hold numbers ({e})") from None
        return from_counts(texts, counts, label_names or list(count_columns), text_pairs=pairs, name=name)
    raise DataError(f"unknown annotation format {fmt!r}; choose long, lists or counts")
