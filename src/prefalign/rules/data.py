"""Texts for `prefalign rules`: CSV, TSV (with a header row) or JSONL, a text column and maybe a label."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..utils.atomic_files import write_text_atomically


def read_rows(path: str | Path) -> list[dict]:
    """The rows of a CSV, TSV or JSONL file as dictionaries; DataError names the file and the problem."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"file not found: {path}")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise DataError(f"{path}: use a .csv, .tsv or .jsonl file")
    try:
        with open(p, encoding="utf-8-sig", newline="") as f:
            if suffix == ".jsonl":
                rows = []
                for n, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise DataError(f"{path} line {n} is not valid JSON ({exc.msg})") from None
                        if not isinstance(row, dict):
                            raise DataError(f"{path} line {n} is not a JSON object")
                        rows.append(row)
                return rows
            quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
            return list(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",", quoting=quoting))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; re-save it as UTF-8") from None


def read_texts(
    path: str | Path,
    text_column: str,
    label_column: str | None,
    labels: Sequence[str],
    need_labels: bool,
    limit: int = 0,
) -> tuple[list[str], np.ndarray | None]:
    """(texts, label indices or None). Labels are read when the column is present (and must then be one of
    ``labels`` on every row); ``need_labels`` makes a missing column an error."""
    rows = read_rows(path)
    if limit:
        rows = rows[:limit]
    if not rows:
        raise DataError(f"{path} has no rows")
    if text_column not in rows[0]:
        raise DataError(f"{path} has no column {text_column!r} (columns: {sorted(rows[0])}); set text_column")
    texts = []
    for n, row in enumerate(rows, 1):
        text = row.get(text_column)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{path} row {n}: empty {text_column!r}; fill it in or drop the row")
        texts.append(text)
    has_labels = bool(label_column) and label_column in rows[0]
    if not has_labels:
        if need_labels:
            raise DataError(f"{path} has no label column {label_column!r} (columns: {sorted(rows[0])})")
        return texts, None
    index = {name: i for i, name in enumerate(labels)}
    y = []
    for n, row in enumerate(rows, 1):
        value = str(row.get(label_column, "")).strip()
        if value not in index:
            raise DataError(f"{path} row {n}: label {value!r} is not one of {list(labels)}")
        y.append(index[value])
    return texts, np.asarray(y, dtype=int)


def write_rows(path: str | Path, rows: list[dict]) -> Path:
    """Write dictionaries as JSONL or CSV (by suffix), atomically."""
    if str(path).endswith(".csv"):
        buf = io.StringIO()
        fields = list(rows[0]) if rows else ["text"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
        return write_text_atomically(path, buf.getvalue())
    return write_text_atomically(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
