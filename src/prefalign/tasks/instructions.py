"""Instruction tuning: Alpaca (one JSON array of instruction, input, output)."""

from __future__ import annotations

from pathlib import Path

from ..data.examples import Example, TaskDataset
from ..data.readers import read_records, record_field
from ..errors import DataError
from .registry import SPLIT_SEED, Splits, TaskDefinition, find_file, held_out, register, split_off

ALPACA_FILES = (
    "alpaca_data.json",
    "alpaca_data_cleaned.json",
    "alpaca_gpt4_data.json",
    "alpaca_en_demo.json",
    "train.json",
    "data.json",
)


def _read_alpaca(path: Path, name: str) -> TaskDataset:
    examples = []
    for n, r in enumerate(read_records(path), 1):
        instruction = record_field(r, "instruction", path, n)
        extra = r.get("input") or ""
        if not isinstance(extra, str):
            raise DataError(f"{path} record {n}: field 'input' is {extra!r}, expected a string")
        output = record_field(r, "output", path, n)
        examples.append(Example(text=instruction, text_pair=extra.strip() or None, answer=output, meta={"row": n}))
    return TaskDataset(examples, [], name)


def _load_alpaca(folder: Path, seed: int) -> Splits:
    path = find_file(folder, ALPACA_FILES, "alpaca", required=False)
    if path is None:
        found = sorted(folder.glob("*.json"))
        if len(found) != 1:
            raise DataError(
                f"{folder}: task 'alpaca' needs one of {', '.join(ALPACA_FILES)} "
                f"(or exactly one .json file; found {len(found)})"
            )
        path = found[0]
    data = _read_alpaca(path, "alpaca")
    train, test = split_off(data, held_out(len(data), 1000, 0.1), SPLIT_SEED, ("alpaca/train", "alpaca/test"))
    return train, None, test


register(
    TaskDefinition(
        name="alpaca",
        kind="generation",
        metric="gpt-score",
        description="Alpaca instruction tuning (instruction, input, output); 1,000 examples (a tenth of a set under "
        "10,000) are held out as test with a fixed seed; scored by a 1-10 judge",
        files="one Alpaca JSON array, e.g. alpaca_data.json or alpaca_en_demo.json (instruction, input, output)",
        load=_load_alpaca,
        decoder_template="### Instruction:\n{text}\n{text_pair}\n### Response:\n",
        shift="alpaca-is",
    )
)
