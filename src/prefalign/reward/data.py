"""Preference sources read into one list of examples: pairs (Bradley-Terry) and rated responses (regression).

Ratings are mapped linearly from a source's declared scale onto 0-4 (thesis app. I.1); an attribute a
source does not rate, or a row leaves empty, is masked out of the loss. Every bad row fails with one line
that names the source and the row (1-based, as a reader counts records).
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .config import RATING_RANGE, SourceConfig


@dataclass
class PreferenceExample:
    """One training unit: a pair (``rejected`` set) or a rated response (``ratings``/``mask`` over the head)."""

    source: int  # index into the list of sources it was read with
    row: int  # 1-based record number in its file
    chosen: str  # a pair's preferred text, or the rated response
    rejected: str | None = None
    ratings: list[float] | None = None  # one per head attribute, 0-4; masked entries hold 0
    mask: list[float] | None = None  # 1 where the source rates the attribute

    @property
    def is_pair(self) -> bool:
        return self.rejected is not None


def read_records(path: str, name: str) -> list[dict]:
    """The records of a CSV/TSV/JSON/JSONL(.gz) file, as dictionaries."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"source '{name}': file not found: {path}")
    suffixes = [s.lower() for s in p.suffixes]
    opener = gzip.open if suffixes[-1:] == [".gz"] else open
    kind = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    try:
        with opener(p, "rt", encoding="utf-8") as f:
            if kind in (".csv", ".tsv"):
                return list(csv.DictReader(f, delimiter="\t" if kind == ".tsv" else ","))
            if kind == ".jsonl":
                rows = []
                for i, line in enumerate(f, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise DataError(f"source '{name}' row {i}: not valid JSON ({exc.msg})") from None
                return rows
            if kind == ".json":
                data = json.load(f)
                if not isinstance(data, list):
                    raise DataError(f"source '{name}': {path} must hold a JSON list of records")
                return data
    except (UnicodeDecodeError, OSError, json.JSONDecodeError) as exc:
        raise DataError(f"source '{name}': cannot read {path} ({str(exc).splitlines()[0][:120]})") from None
    raise DataError(f"source '{name}': {path} is not .csv, .tsv, .json, .jsonl or .jsonl.gz")


def as_text(value) -> str:
    """A cell as text: strings as they are, a chat turn's ``value``, a list of turns joined ``from: value``."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return str(value.get("value", value.get("content", "")))
    if isinstance(value, list):
        return "\n\n".join(
            f"{t.get('from', t.get('role', ''))}: {as_text(t)}" if isinstance(t, dict) else str(t) for t in value
        )
    return str(value)


def _cell(record: dict, column: str, src: SourceConfig, row: int) -> str:
    if column not in record:
        raise DataError(f"source '{src.name}' row {row}: no column '{column}' (columns: {', '.join(map(str, record))})")
    return as_text(record[column])


def read_source(src: SourceConfig, index: int, attributes: list[str]) -> list[PreferenceExample]:
    """Every row of ``src`` as PreferenceExamples, ratings in the order of ``attributes``."""
    records = read_records(src.path, src.name)
    if src.limit:
        records = records[: src.limit]
    if not records:
        raise DataError(f"source '{src.name}' has no rows ({src.path}); give it a file with at least one record")
    lo, hi = src.scale
    out = []
    for row, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(f"source '{src.name}' row {row}: a record must be a mapping of columns")
        prompt = _cell(record, src.prompt_column, src, row) + "\n\n" if src.prompt_column else ""
        if src.format == "pairs":
            chosen = _cell(record, src.chosen_column, src, row)
            rejected = _cell(record, src.rejected_column, src, row)
            if chosen.strip() == rejected.strip():
                raise DataError(
                    f"source '{src.name}' row {row}: the chosen and rejected texts are equal, so the pair "
                    "says nothing; drop or fix the row"
                )
            out.append(PreferenceExample(index, row, prompt + chosen, prompt + rejected))
            continue
        ratings, mask = [0.0] * len(attributes), [0.0] * len(attributes)
        for attribute, column in src.ratings.items():
            raw = record.get(column) if column in record else _cell(record, column, src, row)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                continue  # unrated here: masked
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise DataError(
                    f"source '{src.name}' row {row}: rating {raw!r} in column '{column}' is not a number"
                ) from None
            if math.isnan(value) or not lo <= value <= hi:
                raise DataError(
                    f"source '{src.name}' row {row}: rating {raw!r} in column '{column}' is outside the declared "
                    f"scale [{lo:g}, {hi:g}]; fix the row or the source's scale"
                )
            k = attributes.index(attribute)
            ratings[k] = RATING_RANGE[0] + (value - lo) / (hi - lo) * (RATING_RANGE[1] - RATING_RANGE[0])
            mask[k] = 1.0
        if not any(mask):
            raise DataError(f"source '{src.name}' row {row}: no rating in any of {sorted(src.ratings.values())}")
        response = _cell(record, src.response_column, src, row)
        out.append(PreferenceExample(index, row, prompt + response, ratings=ratings, mask=mask))
    return out


def read_sources(sources: list[SourceConfig], attributes: list[str]) -> list[PreferenceExample]:
    """Every source's examples, in order, each tagged with its source's index."""
    return [ex for i, src in enumerate(sources) for ex in read_source(src, i, attributes)]
