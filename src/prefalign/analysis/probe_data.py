"""The probes' inputs: labelled rows (one label or a list of labels per row) and pairs of inputs.

Rows come from a file (``--data``), a registered task (``--task`` / ``--path``) or a config's data
section (``-c``). A file's label cell may hold one label or several, TweetEmotion style:

* JSON / JSONL: ``"label": "anger"``, ``"label": 2`` or ``"labels": ["anger", "disgust"]``;
* CSV / TSV: ``anger``, ``2``, a JSON list ``["anger","disgust"]`` or names joined by ``,`` ``;``
  or ``|`` (``anger|disgust``).

Integers index ``label_names`` when given; names are matched to ``label_names`` or, without
them, collected and sorted. A row with an empty label list is kept for ``probe bias`` (it
"contains" no label) and is skipped when mining pairs.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.examples import Example
from ..data.readers import _read_rows
from ..errors import ConfigError, DataError
from ..tasks import load_task
from ..training.config import load_config
from ..training.splits import load_splits

_SPLIT = re.compile(r"\s*[,;|]\s*")


@dataclass(frozen=True)
class ProbeRow:
    """One input with the set of labels it carries (indices into the dataset's label names)."""

    text: str
    labels: tuple[int, ...]
    text_pair: str | None = None

    def example(self) -> Example:
        return Example(text=self.text, text_pair=self.text_pair, label=self.labels[0] if self.labels else 0)


@dataclass
class ProbeData:
    rows: list[ProbeRow]
    label_names: list[str]
    source: str

    @property
    def multi_label(self) -> bool:
        return any(len(r.labels) > 1 for r in self.rows)


def read_multilabel(
    path: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    label_names: Sequence[str] | None = None,
    limit: int | None = None,
) -> ProbeData:
    """Read a CSV/TSV/JSON/JSONL file (or saved datasets folder) whose label cells hold one or more labels."""
    path = Path(path)
    columns, raw_rows, class_names = _read_rows(path, label_column, limit)
    for option, col in (
        ("--text-column", text_column),
        ("--label-column", label_column),
        ("--text-pair-column", text_pair_column),
    ):
        if col is not None and col not in columns:
            raise DataError(f"{path} has no column {col!r} (set by {option}); columns: {', '.join(columns[:20])}")
    names = [str(n) for n in label_names] if label_names else (list(class_names) if class_names else None)
    cells = []
    for n, row in enumerate(raw_rows, 1):
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path} row {n}: column {text_column!r} is empty or not text")
        pair = row.get(text_pair_column) if text_pair_column else None
        cells.append((text, pair, _label_items(row.get(label_column), n, path)))
    if names is None:
        found = sorted({item for _, _, items in cells for item in items}, key=lambda x: (not _is_int(x), str(x)))
        if all(_is_int(x) for x in found):
            top = max((int(x) for x in found), default=1)
            names = [str(i) for i in range(top + 1)]
        else:
            names = sorted({str(x) for x in found})
    index = {name: i for i, name in enumerate(names)}
    rows = []
    for n, (text, pair, items) in enumerate(cells, 1):
        labels = []
        for item in items:
            if str(item) in index:
                labels.append(index[str(item)])
            elif _is_int(item) and 0 <= int(item) < len(names):
                labels.append(int(item))
            else:
                raise DataError(f"{path} row {n}: label {item!r} is not one of {names}")
        rows.append(ProbeRow(text=text, labels=tuple(sorted(set(labels))), text_pair=pair))
    if len(names) < 2:
        raise DataError(f"{path}: need at least two labels, found {names}")
    return ProbeData(rows, names, str(path))


def _is_int(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    return isinstance(x, str) and bool(re.fullmatch(r"[+-]?\d+", x.strip()))


def _label_items(cell: Any, n: int, path: Path) -> list:
    """The labels in one cell: a list, one value, a JSON list in a string, or names joined by , ; |."""
    if cell is None:
        return []
    if isinstance(cell, (list, tuple)):
        return [c.strip() if isinstance(c, str) else c for c in cell]
    if isinstance(cell, bool) or isinstance(cell, float) and not cell.is_integer():
        raise DataError(f"{path} row {n}: label {cell!r} is not a class name, index or list of them")
    if isinstance(cell, (int, float)):
        return [int(cell)]
    text = str(cell).strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise DataError(
                f"{path} row {n}: label cell {text[:40]!r} starts like a JSON list but is not one"
            ) from None
        return _label_items(value, n, path)
    return [part for part in _SPLIT.split(text) if part]


def from_task_dataset(data, source: str) -> ProbeData:
    """A TaskDataset (task registry, config) as probe rows: each example's hard label."""
    if data.is_generation or data.is_multiple_choice:
        raise DataError(
            f"{source} is a {'generation' if data.is_generation else 'multiple-choice'} split; the probes "
            "need inputs with class labels"
        )
    rows = [ProbeRow(text=ex.text, labels=(ex.hard_label(),), text_pair=ex.text_pair) for ex in data.examples]
    return ProbeData(rows, list(data.label_names), source)


def load_probe_data(args) -> ProbeData:
    """The rows named by the probe's data options: --data FILE, --task/--path, or -c config (+ --split)."""
    sources = [
        flag for flag, value in (("--data", args.data), ("--task", args.task), ("--config", args.config)) if value
    ]
    if len(sources) > 1:
        raise ConfigError(f"give one data source, not {' and '.join(sources)}")
    if not sources:
        raise ConfigError("name the data: --data FILE, --task NAME --path FOLDER, or --config CONFIG.yaml")
    label_names = _names(args.label_names)
    if args.data:
        return read_multilabel(
            args.data,
            text_column=args.text_column,
            label_column=args.label_column,
            text_pair_column=args.text_pair_column,
            label_names=label_names,
        )
    if args.task:
        splits = dict(zip(("train", "validation", "test"), load_task(args.task, args.path, args.seed)))
        data = splits[args.split]
        if data is None:
            raise DataError(
                f"task '{args.task}' has no separate {args.split} split (validation is carved out of train "
                "at training time); use --split train or --split test"
            )
        return from_task_dataset(data, f"{args.task}/{args.split}")
    cfg = load_config(args.config, args.overrides)
    splits = dict(zip(("train", "validation", "test"), load_splits(cfg.data, cfg.training.seed)))
    data = splits[args.split]
    if data is None:
        raise DataError(f"{args.config} has no {args.split} split (set data.test or use --split validation)")
    return from_task_dataset(data, f"{args.config}:{args.split}")


def _names(value) -> list[str] | None:
    if not value:
        return None
    if isinstance(value, str):
        value = [value]
    out = [n.strip() for item in value for n in item.split(",") if n.strip()]
    return out or None


def balanced_sample(data: ProbeData, n: int, seed: int) -> list[ProbeRow]:
    """Up to ``n`` rows, class-balanced: labels take turns (rarest first), each adding one unused row that
    carries it, in an order shuffled by ``seed``. Rows with no label are left out. Deterministic."""
    rng = random.Random(seed)
    order = list(range(len(data.rows)))
    rng.shuffle(order)
    by_label: dict[int, list[int]] = {c: [] for c in range(len(data.label_names))}
    for i in order:
        for c in data.rows[i].labels:
            by_label[c].append(i)
    queue = sorted((c for c in by_label if by_label[c]), key=lambda c: (len(by_label[c]), c))
    taken: list[int] = []
    seen: set[int] = set()
    cursors = dict.fromkeys(queue, 0)
    while len(taken) < n and queue:
        for c in list(queue):
            if len(taken) >= n:
                break
            rows = by_label[c]
            while cursors[c] < len(rows) and rows[cursors[c]] in seen:
                cursors[c] += 1
            if cursors[c] >= len(rows):
                queue.remove(c)
                continue
            taken.append(rows[cursors[c]])
            seen.add(rows[cursors[c]])
            cursors[c] += 1
    return [data.rows[i] for i in taken]


@dataclass(frozen=True)
class Pair:
    """Two inputs to compare; labels are the dataset's (informative only), cosine the mining similarity."""

    a: ProbeRow
    b: ProbeRow
    cosine: float | None = None


def read_pairs(path: str | Path, label_names: Sequence[str] | None = None) -> tuple[list[Pair], list[str]]:
    """Pairs from a file with columns text_a, text_b and optional label_a, label_b (one label each)."""
    path = Path(path)
    columns, rows, _ = _read_rows(path, None, None)
    for col in ("text_a", "text_b"):
        if col not in columns:
            raise DataError(
                f"{path} has no column {col!r}; a pairs file has columns text_a, text_b and optionally label_a, label_b"
            )
    names = list(label_names) if label_names else []
    pairs = []
    for n, row in enumerate(rows, 1):
        sides = []
        for side in ("a", "b"):
            text = row.get(f"text_{side}")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{path} row {n}: text_{side} is empty")
            items = _label_items(row.get(f"label_{side}"), n, path)
            labels = []
            for item in items:
                key = str(item)
                if key not in names:
                    if _is_int(item) and 0 <= int(item) < len(names):
                        key = names[int(item)]
                    else:
                        names.append(key)
                labels.append(names.index(key))
            sides.append(ProbeRow(text=text, labels=tuple(sorted(set(labels)))))
        pairs.append(Pair(sides[0], sides[1]))
    return pairs, names


def mine_pairs(rows: Sequence[ProbeRow], embeddings, n_pairs: int) -> list[Pair]:
    """The ``n_pairs`` most similar pairs of rows with different label sets, each row used at most once.

    Similarity is the cosine of the embeddings after subtracting their mean over ``rows`` (decoder
    states share a large common direction that makes every raw cosine close to 1). Pairs are taken
    greedily from the most similar down; identical texts and unlabelled rows are skipped; ties break
    by row order, so the result is deterministic.
    """
    keep = [i for i, r in enumerate(rows) if r.labels]
    if len(keep) < 2:
        raise DataError("need at least two labelled inputs to mine pairs")
    emb = embeddings[keep].float()
    emb = emb - emb.mean(0, keepdim=True)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    sim = emb @ emb.T
    labels = [rows[i].labels for i in keep]
    texts = [rows[i].text.strip().lower() for i in keep]
    n = len(keep)
    iu = torch.triu_indices(n, n, offset=1)
    values = sim[iu[0], iu[1]]
    order = torch.argsort(-values.round(decimals=6), stable=True).tolist()  # ties: row-major (i, j) order
    used: set[int] = set()
    pairs = []
    first, second = iu[0].tolist(), iu[1].tolist()
    for k in order:
        i, j = first[k], second[k]
        if i in used or j in used or labels[i] == labels[j] or texts[i] == texts[j]:
            continue
        used.update((i, j))
        pairs.append(Pair(rows[keep[i]], rows[keep[j]], cosine=float(values[k])))
        if len(pairs) >= n_pairs:
            break
    if not pairs:
        raise DataError("no pair of inputs with different labels to compare; the data holds one label only")
    return pairs


def pool_sample(data: ProbeData, n: int, seed: int) -> list[ProbeRow]:
    """The rows pairs are mined from: all of them, or ``n`` drawn class-balanced with ``seed``."""
    labelled = [r for r in data.rows if r.labels]
    if n <= 0 or len(labelled) <= n:
        return labelled
    return balanced_sample(data, n, seed)
