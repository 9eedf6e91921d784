"""Read a labelled table (CSV, TSV, JSON, JSON lines or a saved `datasets` folder) into a TaskDataset.

Formats are chosen by suffix: ``.csv``, ``.tsv``, ``.jsonl`` and ``.json`` (a JSON array of
objects, or one object per line), each optionally compressed as ``.gz`` or ``.bz2``; a folder
is read as one saved by ``datasets.Dataset.save_to_disk``. Nothing is ever unpickled.

``read_records`` and ``record_field`` read the raw JSON / JSON-lines records of a benchmark's
own layout (prefalign.tasks), for loaders that build their examples field by field.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import itertools
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, DataError
from .examples import Example, TaskDataset

_FORMATS = (".csv", ".tsv", ".jsonl", ".json")
_OPENERS: dict[str, Callable[..., IO[str]]] = {"": open, ".gz": gzip.open, ".bz2": bz2.open}
_SUPPORTED = ", ".join(_FORMATS) + " (optionally .gz or .bz2) or a folder saved by datasets.save_to_disk"
_INT_LIKE = re.compile(r"[+-]?\d+(?:\.0*)?")
_ROW_SHAPE = '{"text": ..., "label": ...}'

Row = dict[str, Any]


def read_table(
    path: str | Path,
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    choice_columns: Sequence[str] | None = None,
    soft_label_column: str | None = None,
    name: str | None = None,
    limit: int | None = None,
) -> TaskDataset:
    """Read a labelled data file or saved dataset folder into a TaskDataset.

    Labels may be integers (class indices), integer strings such as ``"0"`` or class names.
    With ``label_names`` given, a string that is one of the names maps to its position and any
    other integer must index ``label_names``; JSON integers are always indices. Without
    ``label_names`` they are inferred: integer labels give ``"0"`` .. ``"max"``, named labels
    their sorted unique names (a saved dataset's ``ClassLabel`` names are used when present).

    ``soft_label_column`` holds a distribution over the classes: a list (or a JSON list in a
    string) or, for two classes, one number in [0, 1] meaning P(class 1). The label column may
    then be absent; a row without a hard label gets the argmax of its soft label.

    ``choice_columns`` name the columns holding a multiple-choice task's candidates (COPA:
    ``["choice1", "choice2"]``); the label indexes them and ``label_names`` default to the
    column names. ``limit`` keeps the first ``limit`` rows. TSV files are read as GLUE writes
    them: tab-separated with no quote characters. Row numbers in errors count data rows from 1.
    """
    path = Path(path)
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive number of rows or None, got {limit!r}")
    if choice_columns is not None:
        choice_columns = list(choice_columns)
        if len(choice_columns) < 2:
            raise ConfigError(f"choice_columns must name at least two columns, got {choice_columns}")
        if label_names is None:
            label_names = choice_columns
        elif len(label_names) != len(choice_columns):
            raise ConfigError(
                f"label_names {list(label_names)} and choice_columns {choice_columns} must have the "
                "same length: the label indexes the choices"
            )
    columns, rows, class_names = _read_rows(path, label_column, limit)
    if label_names is None:
        label_names = class_names

    has_labels = soft_label_column is None or label_column in columns
    wanted = _input_columns(text_column, text_pair_column, choice_columns)
    if has_labels:
        wanted["label_column"] = [label_column]
    if soft_label_column is not None:
        wanted["soft_label_column"] = [soft_label_column]
    _require_columns(path, columns, wanted)

    softs: list[list[float] | float | None] = [None] * len(rows)
    if soft_label_column is not None:
        softs = [_soft_label(row.get(soft_label_column), n, path) for n, row in enumerate(rows, 1)]
    raw_labels: list[int | str | None] = [None] * len(rows)
    if has_labels:
        raw_labels = [_label_key(row.get(label_column), n, path) for n, row in enumerate(rows, 1)]
    if label_names is None:
        label_names = _infer_label_names(raw_labels, softs, path, label_column)
    label_names = [str(x) for x in label_names]
    index = {label: i for i, label in enumerate(label_names)}

    examples = []
    for n, (row, raw, soft) in enumerate(zip(rows, raw_labels, softs), 1):
        label = None if raw is None else _label_index(raw, index, label_names, n, path)
        if soft is not None:
            soft = _fit_soft_label(soft, len(label_names), n, path)
            if label is None:
                label = max(range(len(soft)), key=soft.__getitem__)
        elif label is None:
            raise DataError(f"{path} row {n} has no label in column {label_column!r}; fill it in or drop the row")
        fields = _input_fields(row, n, path, text_column, text_pair_column, choice_columns)
        examples.append(Example(label=label, soft_label=soft, meta={"row": n}, **fields))
    return TaskDataset(examples, label_names, name or _dataset_name(path))


def read_inputs(
    path: str | Path,
    label_names: Sequence[str],
    *,
    text_column: str = "text",
    text_pair_column: str | None = None,
    choice_columns: Sequence[str] | None = None,
    name: str | None = None,
    limit: int | None = None,
) -> TaskDataset:
    """Read inputs to predict on; any label column is ignored (examples get the placeholder label 0)."""
    path = Path(path)
    columns, rows, _ = _read_rows(path, None, limit)
    _require_columns(path, columns, _input_columns(text_column, text_pair_column, choice_columns))
    examples = [
        Example(label=0, meta={"row": n}, **_input_fields(row, n, path, text_column, text_pair_column, choice_columns))
        for n, row in enumerate(rows, 1)
    ]
    return TaskDataset(examples, [str(x) for x in label_names], name or _dataset_name(path))


def read_records(path: str | Path) -> list[Row]:
    """The objects of a JSON array file or a JSON-lines file, whatever its suffix, as they stand.

    For loaders of a benchmark's own layout (SuperGLUE, Alpaca) that read their fields with
    ``record_field``; errors name the file and the line or record (counted from 1).
    """
    path = Path(path)
    with _reading(path), open(path, encoding="utf-8-sig") as f:  # newline=None: \r\n and \r end lines too
        _, records = _read_json(f, False, None, path, noun="record", shape="a JSON object")
    if not records:
        raise DataError(f"{path} has no records; check that it is the right file")
    return records


def record_field(record: Row, key: str, path: Path, n: int, kind: type | tuple = str, allow_empty: bool = False):
    """``record[key]``, checked for type (and, for text, non-emptiness); DataError names file, record and field."""
    value = record.get(key)
    if value is None:
        raise DataError(f"{path} record {n} has no field {key!r}; fields present: {sorted(record)}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DataError(f"{path} record {n}: field {key!r} is {value!r}, expected {getattr(kind, '__name__', kind)}")
    if kind is str and not allow_empty and not value.strip():
        raise DataError(f"{path} record {n}: field {key!r} is empty; fill it in or drop the record")
    return value


def _read_rows(
    path: Path, label_column: str | None, limit: int | None
) -> tuple[list[str], list[Row], list[str] | None]:
    """Columns, rows and (for a saved dataset) the label column's ClassLabel names of a data path."""
    if not path.exists():
        raise DataError(f"no such data file: {path}")
    if path.is_dir():
        columns, rows, class_names = _read_saved_dataset(path, label_column, limit)
    else:
        (columns, rows), class_names = _read_file(path, limit), None
    if not rows:
        raise DataError(f"{path} has no data rows; check that it is the right file")
    return columns, rows, class_names


def _input_columns(
    text_column: str, text_pair_column: str | None, choice_columns: Sequence[str] | None
) -> dict[str, list[str]]:
    """Option name -> the columns it names, for the model-input columns."""
    wanted = {"text_column": [text_column], "choice_columns": list(choice_columns or [])}
    if text_pair_column is not None:
        wanted["text_pair_column"] = [text_pair_column]
    return wanted


def _require_columns(path: Path, columns: list[str], wanted: dict[str, list[str]]) -> None:
    """Raise DataError naming the first column that a data option asks for and the file lacks."""
    for option, cols in wanted.items():
        for col in cols:
            if col not in columns:
                raise DataError(
                    f"{path} has no column {col!r} (set by {option}); available columns: {_preview(columns)}"
                )


def _input_fields(
    row: Row, n: int, path: Path, text_column: str, text_pair_column: str | None, choice_columns: Sequence[str] | None
) -> dict:
    """The text, pair and choices of row ``n`` as Example keyword arguments."""
    return {
        "text": _text(row, text_column, n, path),
        "text_pair": _text(row, text_pair_column, n, path) if text_pair_column else None,
        "choices": [_text(row, c, n, path) for c in choice_columns] if choice_columns else None,
    }


def _read_file(path: Path, limit: int | None) -> tuple[list[str], list[Row]]:
    """Read a data file's column names and rows, choosing the format by suffix."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes[-1] if suffixes and suffixes[-1] in (".gz", ".bz2") else ""
    fmt = suffixes[-2 if compression else -1] if len(suffixes) > bool(compression) else ""
    if fmt not in _FORMATS:
        raise DataError(f"unsupported data file {path}; supported formats: {_SUPPORTED}")
    with _reading(path), _OPENERS[compression](path, "rt", encoding="utf-8-sig", newline="") as f:
        if fmt in (".csv", ".tsv"):
            return _read_delimited(f, "\t" if fmt == ".tsv" else ",", limit, path)
        return _read_json(f, fmt == ".jsonl", limit, path)


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a decoding or I/O failure while reading ``path`` into a one-line DataError."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); re-save it as UTF-8") from e
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}; check that the file is complete and not corrupt") from e


def _read_delimited(f: IO[str], delimiter: str, limit: int | None, path: Path) -> tuple[list[str], list[Row]]:
    """Read CSV (quoted as usual) or TSV (GLUE style: no quoting) with a header row."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    fmt, quoting = ("TSV", csv.QUOTE_NONE) if delimiter == "\t" else ("CSV", csv.QUOTE_MINIMAL)
    reader = csv.DictReader(f, delimiter=delimiter, quoting=quoting)
    try:
        columns = reader.fieldnames
        if not columns:
            raise DataError(f"{path} is empty; expected a header row followed by data rows")
        rows = list(itertools.islice(reader, limit))
    except csv.Error as e:
        raise DataError(f"{path} line {reader.line_num} is not valid {fmt}: {e}") from e
    return list(columns), rows


def _read_json(
    f: IO[str], lines_only: bool, limit: int | None, path: Path, noun: str = "row", shape: str = _ROW_SHAPE
) -> tuple[list[str], list[Row]]:
    """Read a JSON array of objects or JSON lines (one object per line); errors call an object a ``noun``."""
    lines: Iterable[str] = f
    if not lines_only:
        text = f.read()
        if text.lstrip().startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} is not valid JSON: {e}") from e
            return _check_objects(records[:limit] if limit else records, path, noun, shape)
        lines = text.split("\n")  # not splitlines(): JSON strings may hold a raw U+2028
    records = []
    for line_no, line in enumerate(lines, 1):
        if limit is not None and len(records) >= limit:
            break
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(
                f"{path} line {line_no} is not valid JSON ({e.msg}); expected a JSON array of objects "
                "or one JSON object per line"
            ) from e
    return _check_objects(records, path, noun, shape)


def _check_objects(
    records: list, path: Path, noun: str = "row", shape: str = _ROW_SHAPE
) -> tuple[list[str], list[Row]]:
    """Check that every JSON record is an object; return the union of their keys and the rows."""
    columns: dict[str, None] = {}
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(
                f"{path} {noun} {n} is a JSON {type(record).__name__}, not an object; write each {noun} as {shape}"
            )
        columns.update(dict.fromkeys(record))
    return list(columns), records


def _read_saved_dataset(
    path: Path, label_column: str | None, limit: int | None
) -> tuple[list[str], list[Row], list[str] | None]:
    """Read a folder saved by datasets.save_to_disk; also return its ClassLabel names, if any."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as e:
        raise DataError(
            f"{path} is a folder but not one saved by datasets.save_to_disk; supported formats: {_SUPPORTED}"
        ) from e
    if isinstance(ds, datasets.DatasetDict):
        raise DataError(
            f"{path} holds a DatasetDict with splits {list(ds)}; pass one split folder, "
            f"e.g. {path / next(iter(ds), 'train')}"
        )
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    feature = ds.features.get(label_column) if label_column else None
    class_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return list(ds.column_names), ds.to_list(), class_names


def _label_key(value: Any, n: int, path: Path) -> int | str | None:
    """Normalise a raw label to an int (an index), a str (a name or integer string) or None if missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return value.strip() or None
    raise DataError(
        f"{path} row {n} has label {value!r}; a label must be a class index or name "
        "(put probabilities in soft_label_column)"
    )


def _as_int(key: int | str) -> int | None:
    """The integer a label key stands for, or None for a class name."""
    if isinstance(key, int):
        return key
    return int(key.split(".")[0]) if _INT_LIKE.fullmatch(key) else None


def _infer_label_names(
    raw: list[int | str | None], softs: list[list[float] | float | None], path: Path, column: str
) -> list[str]:
    """Infer class names: "0".."max" for integer labels, sorted unique names for named labels."""
    keys = [k for k in raw if k is not None]
    ints = [_as_int(k) for k in keys]
    sizes = {2 if isinstance(s, float) else len(s) for s in softs if s is not None}
    if not keys and not sizes:
        raise DataError(f"{path}: column {column!r} holds no labels; fill it in or pass soft_label_column")
    if len(sizes) > 1:
        raise DataError(f"{path}: soft labels have different lengths {sorted(sizes)}; pass label_names")
    if any(i is None for i in ints):
        if any(i is not None for i in ints):
            raise DataError(f"{path}: column {column!r} mixes integer labels and class names; pass label_names")
        if sizes:
            raise DataError(
                f"{path}: named labels with soft labels; pass label_names to say which class each "
                "soft-label position means"
            )
        names = sorted(set(keys))
    else:
        if any(i < 0 for i in ints):
            raise DataError(
                f"{path}: column {column!r} has negative label {min(ints)}; labels are class indices from 0"
            )
        k = max(max(ints, default=-1) + 1, *sizes, 0)
        names = [str(i) for i in range(k)]
    if len(names) < 2:
        raise DataError(
            f"{path}: found only the label(s) {names} in column {column!r}; pass label_names to list all classes"
        )
    return names


def _label_index(key: int | str, index: dict[str, int], names: list[str], n: int, path: Path) -> int:
    """Map a label key to its class index: a name to its position, an integer to itself if in range."""
    if isinstance(key, str) and key in index:
        return index[key]
    i = _as_int(key)
    if i is not None and 0 <= i < len(names):
        return i
    raise DataError(
        f"{path} row {n} has label {key!r} outside the label set {_preview(names)}; fix the row or pass label_names"
    )


def _soft_label(value: Any, n: int, path: Path) -> list[float] | float | None:
    """Parse a soft label: a list, a JSON list string, or one number P(class 1); None if missing."""
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
    if value is None:
        return None
    if _is_number(value):
        return float(value)
    if isinstance(value, list) and all(_is_number(p) for p in value):
        return [float(p) for p in value]
    raise DataError(
        f"{path} row {n} has soft label {value!r}; write a list of probabilities such as [0.3, 0.7] "
        "or, for two classes, one number P(class 1)"
    )


def _is_number(value: Any) -> bool:
    """Whether a parsed JSON value is a number (booleans are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fit_soft_label(soft: list[float] | float, k: int, n: int, path: Path) -> list[float]:
    """Check a parsed soft label against the number of classes and return it as a distribution."""
    if isinstance(soft, float):
        if k != 2 or not 0.0 <= soft <= 1.0:
            raise DataError(
                f"{path} row {n} has soft label {soft!r}; one number must be P(class 1) in [0, 1] and "
                f"needs two classes, not {k}; otherwise write a list of {k} probabilities"
            )
        return [1.0 - soft, soft]
    if len(soft) != k or any(not p >= 0.0 for p in soft) or abs(sum(soft) - 1.0) > 1e-4:
        raise DataError(f"{path} row {n} has soft label {soft!r}; it must be {k} non-negative numbers summing to 1")
    return soft


def _text(row: Row, column: str, n: int, path: Path) -> str:
    """Return the row's non-empty text in ``column``, or raise DataError naming the row."""
    value = row.get(column)
    if not isinstance(value, str) or not value.strip():
        found = "is missing" if value is None else f"is {value!r}"
        raise DataError(f"{path} row {n}: the text in column {column!r} {found}; fill it in or drop the row")
    return value


def _dataset_name(path: Path) -> str:
    """The file name without its format and compression suffixes (``dev.tsv.gz`` -> ``dev``)."""
    if path.is_dir():
        return path.name
    name = path.name
    for suffix in reversed(path.suffixes):
        if suffix.lower() not in _FORMATS and suffix.lower() not in _OPENERS:
            break
        name = name[: -len(suffix)]
    return name


def _preview(items: Sequence[str], limit: int = 20) -> str:
    """A one-line listing of ``items``, shortened after ``limit`` entries."""
    shown = ", ".join(repr(x) for x in items[:limit])
    return f"[{shown}, ... {len(items) - limit} more]" if len(items) > limit else f"[{shown}]"
